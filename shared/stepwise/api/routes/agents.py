"""Routes for agents: register, list, read, add versions, move aliases, and execute a version.

No ``from __future__ import annotations``: Powertools reads the route functions' annotations at run time.
"""

import uuid
from functools import partial
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter as Router

from stepwise.api import models as m
from stepwise.api import policy
from stepwise.api.auth import tenant_of
from stepwise.api.errors import ApiError, documented, problem_details
from stepwise.api.facade import UNSETTLED, StepwiseApi
from stepwise.api.triggers import register_triggers
from stepwise.graph.errors import GraphError
from stepwise.store import AgentRecord, StoreConflict
from stepwise.store.base import VersionRecord


def router(api: StepwiseApi) -> Router:
    """Agents and their immutable versions, per tenant; ``execute`` starts a run of one."""
    router = Router()

    tenant = partial(tenant_of, router)

    # -- agents ---------------------------------------------------------------------------------
    @router.post(
        "/agents",
        status_code=201,
        summary="Register an agent (its graph as YAML text or JSON)",
        tags=["agents"],
        responses=documented(403, 409, ok={201: "registered: version 1, aliased `live`"}, body=True),
    )
    def register_agent(body: Annotated[m.RegisterAgent, Body()]) -> m.VersionResult:
        name, ref = register_version(api, tenant(), body.id, body)
        try:
            record = api.store.create_agent(tenant(), name, ref, description=body.description)
        except StoreConflict:
            raise ApiError(409, "agent_exists", f"agent {name!r} exists; add a version with POST /agents/{name}/versions") from None
        api.events.publish("agent.registered", tenant(), {"agent": name, "version": 1, "ref": ref})
        return m.VersionResult(agent=name, version=1, ref=ref, created=True, aliases=record.aliases)

    @router.get("/agents", summary="List your agents", tags=["agents"], responses=documented())
    def list_agents() -> m.AgentList:
        agents = api.store.list_agents(tenant())
        return m.AgentList(
            agents=[
                m.AgentSummary(
                    id=a.name, description=a.description, latest_version=len(a.versions), aliases=a.aliases, updated_at=a.updated_at
                )
                for a in agents
            ]
        )

    @router.get("/agents/<agent_id>", summary="An agent with its versions and aliases", tags=["agents"], responses=documented())
    def get_agent(agent_id: str) -> m.Agent:
        return m.Agent.of(api.agent(tenant(), agent_id))

    @router.post(
        "/agents/<agent_id>/versions",
        summary="Add an immutable version (moves `live` unless promote=false)",
        tags=["agents"],
        responses=documented(
            403, ok={201: "a new version", 200: "the graph is already one of the agent's versions: that one (created: false)"}, body=True
        ),
    )
    def add_version(agent_id: str, body: Annotated[m.AddVersion, Body()]) -> Response[m.VersionResult]:
        api.agent(tenant(), agent_id)
        _, ref = register_version(api, tenant(), agent_id, body)
        record, version, created = api.store.add_version(tenant(), agent_id, ref, description=body.description, promote=body.promote)
        if created:
            api.events.publish("agent.version_added", tenant(), {"agent": agent_id, "version": version.version, "ref": ref})
        result = m.VersionResult(agent=agent_id, version=version.version, ref=ref, created=created, aliases=record.aliases)
        return Response(status_code=201 if created else 200, content_type="application/json", body=result)

    @router.put(
        "/agents/<agent_id>/aliases/<alias>", summary="Point an alias at a version", tags=["agents"], responses=documented(body=True)
    )
    def set_alias(
        agent_id: str,
        alias: Annotated[str, Path(pattern=m.ALIAS, description="1-40 letters, digits, '_' or '-', as execute's `alias`")],
        body: Annotated[m.SetAlias, Body()],
    ) -> m.Agent:
        api.agent(tenant(), agent_id)
        try:
            record = api.store.set_alias(tenant(), agent_id, alias, body.version)
        except ValueError as exc:  # the same answer as executing a version that does not exist
            raise ApiError(404, "version_not_found", str(exc), [{"field": "body.version", "type": "unknown_version"}]) from None
        api.events.publish("agent.alias_moved", tenant(), {"agent": agent_id, "alias": alias, "version": body.version})
        return m.Agent.of(record)

    # -- the agent's webhook: every run of the agent reports to it (a run's own webhook wins) ----------
    @router.put(
        "/agents/<agent_id>/webhook", summary="Set the agent's webhook (all its runs)", tags=["agents"], responses=documented(body=True)
    )
    def set_webhook(agent_id: str, body: Annotated[m.Webhook, Body()]) -> m.WebhookInfo:
        api.agent(tenant(), agent_id)
        try:
            api.webhooks.check(body.url)
        except ValueError as exc:
            raise ApiError(422, "webhook_rejected", str(exc), [{"field": "body.url", "type": "not_allowed"}]) from None
        api.store.set_webhook(tenant(), agent_id, body.model_dump())
        return m.WebhookInfo(agent=agent_id, url=body.url, events=body.events, configured=True)

    @router.get("/agents/<agent_id>/webhook", summary="The agent's webhook (never its secret)", tags=["agents"], responses=documented())
    def get_webhook(agent_id: str) -> m.WebhookInfo:
        api.agent(tenant(), agent_id)
        hook = api.agent_webhook(tenant(), agent_id)
        return m.WebhookInfo(agent=agent_id, url=hook.url, events=hook.events, configured=True) if hook else m.WebhookInfo(agent=agent_id)

    @router.delete("/agents/<agent_id>/webhook", summary="Remove the agent's webhook", tags=["agents"], responses=documented())
    def delete_webhook(agent_id: str) -> m.WebhookInfo:
        api.agent(tenant(), agent_id)
        api.store.set_webhook(tenant(), agent_id, None)
        return m.WebhookInfo(agent=agent_id)

    return router


def execute_router(api: StepwiseApi) -> Router:
    """Execute a version of an agent: start a run, optionally wait for it to finish or pause."""
    router = Router()

    tenant = partial(tenant_of, router)

    @router.post(
        "/agents/<agent_id>/execute",
        summary="Start a run; optionally wait for it to finish or pause",
        tags=["runs"],
        responses=documented(
            403,
            409,
            ok={200: "the run has left `running`: succeeded, failed, cancelled or waiting", 202: "the run still runs: poll GET /runs/{id}"},
            body=True,
        ),
    )
    def execute(agent_id: str, body: Annotated[m.ExecuteAgent, Body()]) -> Response[m.Run]:
        who = tenant()
        record = api.agent(who, agent_id)
        chosen = _chosen_version(record, body.version, body.alias)
        spec = api.client.graph(chosen.ref)
        try:  # the allow-list may have shrunk since registration
            policy.check(spec, api.settings.api_allowed_modules)
        except GraphError as exc:
            raise ApiError(403, "policy_violation", str(exc), [problem_details(p) for p in exc.problems]) from None
        name = body.thread_id or f"thread-{uuid.uuid4().hex[:12]}"
        thread_id = api.claim_thread(who, name)  # the engine's thread (another tenant may use the same name)
        if body.webhook is not None:
            try:
                api.webhooks.check(body.webhook.url)
            except ValueError as exc:
                raise ApiError(422, "webhook_rejected", str(exc), [{"field": "body.webhook.url", "type": "not_allowed"}]) from None
        if body.multitask == "enqueue" and (queued := api.enqueue_behind(spec, body.input, thread_id, who)) is not None:
            # queued behind the runs in flight: the drain starts it when they end; wait_seconds waits for that too
            run_id = queued.run_id
            api.events.publish("run.queued", who, {"run_id": run_id, "thread_id": name, "agent": agent_id})
        else:
            if "multitask" in body.model_fields_set:  # `reject` by name refuses a waiting run too; unnamed, the engine's check
                api.make_room(thread_id, body.multitask, f"run on the thread by {router.context['principal'].subject}")
            if body.background:
                run_id = api.start_background(spec, body.input, thread_id, who)
            else:
                run_id = api.client.run(spec, body.input, thread_id=thread_id, tenant=who).run_id
            api.events.publish("run.started", who, {"run_id": run_id, "thread_id": name, "agent": agent_id, "version": chosen.version})
        hook = body.webhook or api.agent_webhook(who, agent_id)
        if hook is not None:
            api.watch(run_id, hook)
        run = api.wait(run_id, body.wait_seconds)
        api.drain(thread_id)
        if run.status not in UNSETTLED:
            api.events.publish(f"run.{run.status}", who, {"run_id": run.run_id, "thread_id": name})
        view = api.run_view(run)
        return Response(status_code=202 if run.status in UNSETTLED else 200, content_type="application/json", body=view)

    return router


def register_version(api: StepwiseApi, tenant: str, agent_id: str | None, source: m.GraphSource) -> tuple[str, str]:
    """Load the graph under the policy, register it with the engine; return (agent id, ref)."""
    if (source.yaml is None) == (source.graph is None):
        kind = "missing" if source.yaml is None else "exclusive"
        details = [{"field": f"body.{name}", "type": kind} for name in ("yaml", "graph")]
        raise ApiError(422, "validation_error", "send exactly one of `yaml` (YAML text) or `graph` (a JSON object)", details)
    try:
        spec = policy.load_graph(yaml_text=source.yaml, graph=source.graph, allowed_modules=api.settings.api_allowed_modules)
    except GraphError as exc:
        raise ApiError(422, "invalid_graph", str(exc), [problem_details(p) for p in exc.problems]) from None
    if agent_id is not None and spec.name != agent_id:
        raise ApiError(
            422,
            "validation_error",
            f"the graph's name is {spec.name!r} but the agent is {agent_id!r}; make them equal",
            [{"field": "body.graph.name", "type": "mismatch"}],
        )
    from stepwise.tools.permissions import PermissionManager
    from stepwise.tools.roles import RoleStore

    denied = PermissionManager(RoleStore(api.store)).check_graph(spec, tenant)
    if denied:
        raise ApiError(403, "tools_not_permitted", "; ".join(denied), [{"field": "body.graph", "type": "role"}])
    ref = api.client.register(spec)
    register_triggers(api, tenant, spec.name, spec)
    return spec.name, ref


def _chosen_version(record: AgentRecord, version: int | None, alias: str | None) -> VersionRecord:
    """The version to execute: the one asked for, else the one ``alias`` (default ``live``) points at."""
    if version is not None and alias is not None:  # it ran `version` and ignored `alias`
        detail = [{"field": "body.alias", "type": "conflict"}]
        raise ApiError(422, "validation_error", f"pass `version` or `alias`, not both (version {version}, alias {alias!r})", detail)
    if version is not None:
        chosen = record.version(version)
        if chosen is None:
            raise ApiError(404, "version_not_found", f"agent {record.name!r} has versions 1..{len(record.versions)}")
        return chosen
    alias = alias or "live"
    number = record.aliases.get(alias)
    if number is None:
        raise ApiError(
            404, "alias_not_found", f"agent {record.name!r} has no alias {alias!r}; aliases: {', '.join(sorted(record.aliases))}"
        )
    found = record.version(number)
    assert found is not None
    return found
