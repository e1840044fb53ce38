"""Triggers at run time: start an agent's run from an event or a schedule tick, once per event id.

- ``fire`` is the one way a trigger starts a run — the trigger Lambda (``functions/trigger``) calls it
  with what EventBridge or Scheduler delivers; ``stepwise serve`` calls it from its local event bus
  (``POST /events``) and its in-process ``TriggerScheduler``.
- Idempotent per event id: EventBridge delivers at least once, so the first delivery claims
  ``(tenant, agent, trigger, event id)`` in the API store (a conditional put) and names the run's thread
  after it; a redelivery finds the claim and answers the run already started. A delivery that claimed
  but crashed before starting is finished by the next delivery (the claimed thread has no run yet).
- Which triggers are live: the ones in the version the trigger's alias (default ``live``) points at, so
  moving an alias moves the triggers; ``register_triggers`` keeps an index of the agents that declare
  any, which the scheduler reads (the store has no "all tenants" query, by design).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from stepwise.graph.spec import GraphSpec
from stepwise.graph.triggers import Schedule, Trigger, TriggerInvocation, TriggerTarget, matches, named

if TYPE_CHECKING:
    from stepwise.api.facade import StepwiseApi

log = logging.getLogger("stepwise.triggers")
INDEX_PK = "triggers"
#: Rates count from this instant, so every process (and a restarted one) agrees on the ticks.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Fired:
    """The run one trigger started for an event (or that it was a duplicate)."""

    run_id: str | None
    thread_id: str
    duplicate: bool


class TriggerError(ValueError):
    """The trigger cannot start a run (unknown agent, alias or trigger): a stale rule, not a retryable fault."""


def event_key(target: TriggerTarget, event_id: str) -> str:
    return hashlib.sha256(f"{target.tenant}\0{target.agent}\0{target.trigger}\0{event_id}".encode()).hexdigest()[:32]


def live_triggers(api: StepwiseApi, tenant: str, agent: str, alias: str = "live") -> tuple[GraphSpec, dict[str, Trigger]]:
    """The graph the alias points at and its triggers by name."""
    record = api.store.get_agent(tenant, agent)
    if record is None:
        raise TriggerError(f"tenant {tenant!r} has no agent {agent!r}; delete the rule or register the agent")
    number = record.aliases.get(alias)
    version = record.version(number) if number is not None else None
    if version is None:
        raise TriggerError(f"agent {agent!r} has no alias {alias!r}")
    spec = api.client.graph(version.ref)
    return spec, dict(named(spec.triggers))


def fire(api: StepwiseApi, invocation: TriggerInvocation | dict[str, Any]) -> Fired:
    """Start the run ``invocation`` asks for (once per event id); answer the run that it started."""
    from stepwise.api import policy

    inv = TriggerInvocation.model_validate(invocation)
    target, event = inv.stepwise_trigger, inv.event
    spec, triggers = live_triggers(api, target.tenant, target.agent, target.alias)
    trigger = triggers.get(target.trigger)
    if trigger is None:
        raise TriggerError(f"agent {target.agent!r} ({target.alias}) has no trigger {target.trigger!r}; its triggers: {sorted(triggers)}")
    if not trigger.enabled:
        raise TriggerError(f"trigger {target.trigger!r} of agent {target.agent!r} is disabled")
    policy.check(spec, api.settings.api_allowed_modules)
    key = event_key(target, str(event["id"]))
    thread_id = f"trigger-{key[:24]}"
    claimed = api.store.claim_once(
        f"tenant#{target.tenant}", f"trigger-event#{key}", {"agent": target.agent, "trigger": target.trigger, "event_id": event["id"]}
    )
    if not claimed:
        started = api.client.runs(thread_id=thread_id, limit=1)
        if started:
            return Fired(started[0].run_id, thread_id, duplicate=True)
        # claimed by a delivery that died before starting the run: this one finishes the job
    thread = api.claim_thread(target.tenant, thread_id)  # the name is the tenant's own (event_key holds the tenant)
    run_id = api.start_background(spec, trigger.run_input(event), thread, target.tenant)
    hook = api.agent_webhook(target.tenant, target.agent)
    if hook is not None:
        api.watch(run_id, hook)
    api.events.publish(
        "run.started", target.tenant, {"run_id": run_id, "thread_id": thread_id, "agent": target.agent, "trigger": target.trigger}
    )
    return Fired(run_id, thread_id, duplicate=False)


def register_triggers(api: StepwiseApi, tenant: str, agent: str, spec: GraphSpec) -> None:
    """Index an agent whose graph declares triggers (the scheduler and the local bus read the index)."""
    if spec.triggers:
        api.store.put_index(INDEX_PK, f"{tenant}#{agent}", {"tenant": tenant, "agent": agent})


def indexed_agents(api: StepwiseApi, tenant: str | None = None) -> list[tuple[str, str]]:
    docs = api.store.read_index(INDEX_PK, f"{tenant}#" if tenant else "")
    return [(str(d["tenant"]), str(d["agent"])) for d in docs]


def put_events(api: StepwiseApi, tenant: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The local event bus: each entry (EventBridge's PutEvents shape) becomes an event matched against the
    tenant's event triggers; answers, per entry, its event id and the runs it started."""
    results: list[dict[str, Any]] = []
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    candidates: list[tuple[str, str, Trigger]] = []
    for _, agent in indexed_agents(api, tenant):
        try:
            _, triggers = live_triggers(api, tenant, agent)
        except TriggerError:
            continue
        candidates += [(agent, name, t) for name, t in triggers.items() if t.event is not None and t.enabled]
    for entry in entries:
        event = {
            "version": "0",
            "id": entry.get("id") or str(uuid.uuid4()),
            "detail-type": entry["detail_type"],
            "source": entry["source"],
            "account": tenant,
            "time": now,
            "region": "local",
            "resources": entry.get("resources", []),
            "detail": entry.get("detail", {}),
        }
        runs = []
        for agent, name, trigger in candidates:
            assert trigger.event is not None
            if matches(trigger.event, event):
                target = TriggerTarget(tenant=tenant, agent=agent, trigger=name)
                fired = fire(api, TriggerInvocation(stepwise_trigger=target, event=event))
                runs.append({"agent": agent, "trigger": name, "run_id": fired.run_id, "duplicate": fired.duplicate})
        results.append({"event_id": event["id"], "runs": runs})
    return results


class TriggerScheduler:
    """``stepwise serve``'s in-process scheduler: fires every schedule trigger of every indexed agent.

    A tick's event id is ``<trigger>@<fire time>``, so two serve processes (or a restart within the same
    minute) start one run per tick. Ticks missed while nothing was running are not replayed (like
    EventBridge Scheduler with no flexible window). ``poll`` bounds how late a new agent is noticed.
    """

    def __init__(self, api: StepwiseApi, *, poll: float = 30.0, now: Callable[[], datetime] | None = None) -> None:
        self.api = api
        self.poll = poll
        self.now = now or (lambda: datetime.now(UTC))
        self._stop = threading.Event()
        self._wake = threading.Event()  # a run began to wait: its deadline may come before the loop's sleep ends
        self._thread: threading.Thread | None = None
        self._last = self.now()

    def due(self, since: datetime, until: datetime) -> list[tuple[TriggerTarget, datetime]]:
        """The (target, fire time) pairs in ``(since, until]``."""
        out: list[tuple[TriggerTarget, datetime]] = []
        for tenant, agent in indexed_agents(self.api):
            try:
                _, triggers = live_triggers(self.api, tenant, agent)
            except TriggerError:
                continue
            for name, trigger in triggers.items():
                if trigger.schedule is None or not trigger.enabled:
                    continue
                schedule = Schedule.parse(trigger.schedule)
                when = schedule.next_after(since, zone=trigger.timezone, anchor=EPOCH)
                while when is not None and when <= until:
                    out.append((TriggerTarget(tenant=tenant, agent=agent, trigger=name), when))
                    when = schedule.next_after(when, zone=trigger.timezone, anchor=EPOCH)
        return out

    def tick(self) -> list[Fired]:
        """Fire what fell due since the last tick."""
        until = self.now()
        fired: list[Fired] = []
        for target, when in self.due(self._last, until):
            stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            event = {
                "version": "0",
                "id": f"{target.trigger}@{stamp}",
                "source": "stepwise.scheduler",
                "detail-type": "Scheduled Event",
                "time": stamp,
                "resources": [],
                "detail": {"schedule": target.trigger},
            }
            try:
                fired.append(fire(self.api, TriggerInvocation(stepwise_trigger=target, event=event)))
            except Exception:  # one broken agent must not stop the others' schedules
                log.exception("schedule trigger %s of %s/%s failed", target.trigger, target.tenant, target.agent)
        self._last = until
        self.continue_parked()
        self.expire_waits()
        for thread_id in self.api.client.queued_threads():  # queues left by a restart (or a missed run end)
            self.api.drain(thread_id)
        return fired

    def continue_parked(self) -> list[str]:
        """Continue the runs parked on an LLM 429 whose time has come (in the background; a compare-and-set
        makes sure one process continues each)."""
        due = [r.run_id for r in self.api.client.parked_due()]
        for run_id in due:
            self.api.run_in_background(self.api.client.continue_parked, run_id)
        return due

    def expire_waits(self) -> list[str]:
        """Fail the runs whose human wait passed its deadline (``config.timeout_seconds``) with ``States.Timeout``,
        as Step Functions would: only a running server ends them on time (in the background; a compare-and-set
        makes sure one process ends each, and an answer that lands first wins)."""
        now = self.now().timestamp()
        due = [r.run_id for r in self.api.client.overdue_waits(now=now)]
        for run_id in due:
            self.api.run_in_background(partial(self._expire, now=now), run_id)
        return due

    def _expire(self, run_id: str, now: float) -> None:
        result = self.api.client.expire_wait(run_id, now=now)
        run = self.api.client.get_run(run_id)
        if result.status == "failed" and run is not None:
            self.api.publish_run("failed", run)

    def next_wake(self) -> float:
        """Seconds until the loop should tick again: the next minute boundary (cron's resolution), ``poll``, or
        the next human wait's deadline, whichever is first (at least half a second apart)."""
        now = self.now().timestamp()
        wait = self._next_tick(now)
        deadline = self.api.client.next_deadline(after=now)
        if deadline is not None:
            wait = min(wait, max(0.5, deadline - now))
        return wait

    def _next_tick(self, now: float) -> float:
        """Seconds to the next minute boundary (cron's resolution) or ``poll``, whichever is first."""
        return min(self.poll, 60.0 - now % 60.0 + 0.05)

    def start(self) -> None:
        self._listen()
        self._thread = threading.Thread(target=self._loop, name="stepwise-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _listen(self) -> None:
        """A run that begins to wait wakes the loop, which then sleeps until that wait's deadline if it is the
        nearest (else a 2 s timeout could end up to ``poll`` seconds late)."""
        self.api.client.services.also_observe(self._on_event)

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("kind") == "waiting":
            self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            try:
                wait = self.next_wake()
            except Exception:
                log.exception("scheduler could not read the next deadline")
                wait = self._next_tick(self.now().timestamp())
            self._wake.wait(wait)
            self._wake.clear()
