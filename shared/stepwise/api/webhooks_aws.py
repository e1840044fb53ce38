"""Webhooks on AWS: dispatched from the events table's stream, delivered from SQS, dead-lettered to SQS.

A Lambda cannot keep a watcher thread alive after it answers, so on AWS the API stores a run's webhook
(``store_run_webhook``, API table) instead of watching the run, and the delivery happens elsewhere:

1. **Dispatch** (the ``channels`` Lambda, on the events stream): an inserted ``interrupt``, ``run_finished``
   or ``run_failed`` event of a run whose webhook (the run's own, else its agent's) asks for that status
   (``waiting``, ``succeeded``, ``failed``) becomes one ``WebhookJob`` on the webhooks queue. The job's
   event id is derived from the run and the event's seq, so a stream redelivery sends the same id and
   the receiver's replay check (``verify(seen=...)``) drops the copy.
2. **Delivery** (the ``webhooks`` Lambda, on that queue; outside the VPC, no data permissions): one signed
   POST per receive (``post_once``: the same SSRF checks and signature as locally). A retryable failure
   (connection error, 408/425/429/5xx) makes the message visible again after ``backoff`` seconds
   (exponential: base·2ⁿ⁻¹, capped at 15 minutes) and reports it as a batch item failure; after
   ``attempts`` receives, or at once on a final answer (other 4xx, a refused URL), a record of the
   failure — without the secret — goes to the dead-letter queue and the job is dropped.

The queue's own redrive policy (to the same dead-letter queue) only catches a sender that crashes.
The secret travels in the (SSE-encrypted) job message because a retry signs again with a fresh
timestamp; it is never logged and never written to the dead-letter queue.

``cancelled`` has no log event (cancelling writes the run record), so the stream never sees it: the api
Lambda's event sink ``CancelledWebhooks`` queues that job itself when the API cancels a run.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from stepwise.api.models import Webhook, public_error, webhook_waiting
from stepwise.api.webhooks import RETRYABLE, WebhookRejected, post_once

#: log event type -> the run status a webhook reports
STATUS_OF_EVENT = {"interrupt": "waiting", "run_finished": "succeeded", "run_failed": "failed"}
RUN_HOOK_PK = "webhook-run#"
MAX_VISIBILITY = 900


class WebhookJob(BaseModel):
    """One delivery to make: what the queue carries between dispatch and delivery."""

    url: str
    secret: str = Field(repr=False)
    kind: str
    event_id: str
    data: dict[str, Any]
    created: float


def store_run_webhook(store: Any, run_id: str, hook: Webhook, facts: dict[str, Any]) -> None:
    """Keep a run's webhook (its own or its agent's) and the facts its events report, in the API store,
    for the stream dispatcher (AWS: no watcher thread)."""
    store.put_index(f"{RUN_HOOK_PK}{run_id}", "hook", {"hook": hook.model_dump(), "facts": facts})


def run_webhook(store: Any, run_id: str) -> tuple[Webhook, dict[str, Any]] | None:
    """The run's stored webhook and facts: ``dispatch``'s ``find``."""
    docs = store.read_index(f"{RUN_HOOK_PK}{run_id}", "hook")
    return (Webhook.model_validate(docs[0]["hook"]), dict(docs[0].get("facts") or {"run_id": run_id})) if docs else None


def dispatch(records: list[dict[str, Any]], find: Callable[[str], tuple[Webhook, dict[str, Any]] | None]) -> list[WebhookJob]:
    """The jobs the stream records call for. ``find(run_id)`` answers the run's webhook and the facts to
    report (run_id, thread_id, agent, …), or None when the run has no webhook."""
    from stepwise.state.events import decode

    jobs: list[WebhookJob] = []
    for record in records:
        image = (record.get("dynamodb") or {}).get("NewImage") or {}
        kind = (image.get("type") or {}).get("S")
        status = STATUS_OF_EVENT.get(kind or "")
        if record.get("eventName") != "INSERT" or status is None or "run_id" not in image or "seq" not in image:
            continue
        run_id, seq = image["run_id"]["S"], int(image["seq"]["N"])
        found = find(run_id)
        if found is None or status not in found[0].events:
            continue
        hook, facts = found
        detail: dict[str, Any] = {**facts, "status": status}
        raw = (image.get("data") or {}).get("S")
        data = decode(raw) if raw else {}
        if status == "waiting" and isinstance(data, dict):
            detail["waiting"] = webhook_waiting({**data, "node": (image.get("node") or {}).get("S")})
        if status == "failed" and isinstance(data, dict) and data:  # a run_failed event's data is the run's error
            detail["error"] = public_error(data)
        event_id = "evt_" + hashlib.sha256(f"{run_id}\0{seq}".encode()).hexdigest()[:32]
        jobs.append(WebhookJob(url=hook.url, secret=hook.secret, kind=f"run.{status}", event_id=event_id, data=detail, created=time.time()))
    return jobs


def send_jobs(jobs: list[WebhookJob], queue_url: str, sqs: Any) -> int:
    """Put the jobs on the webhooks queue (batches of 10)."""
    for start in range(0, len(jobs), 10):
        batch = jobs[start : start + 10]
        entries = [{"Id": str(i), "MessageBody": job.model_dump_json()} for i, job in enumerate(batch)]
        out = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if out.get("Failed"):
            raise RuntimeError(f"{len(out['Failed'])} webhook jobs were not queued: {[f.get('Code') for f in out['Failed']]}")
    return len(jobs)


def body_of(job: WebhookJob) -> bytes:
    return json.dumps({"id": job.event_id, "type": job.kind, "created": job.created, "data": job.data}, separators=(",", ":")).encode()


def deliver_messages(
    records: list[dict[str, Any]],
    *,
    sqs: Any,
    queue_url: str,
    dead_letter_url: str,
    attempts: int = 5,
    base: float = 30.0,
    allow_private: bool = False,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Deliver each SQS record's job once; answer Lambda's partial-batch response (``batchItemFailures``)."""
    failures: list[dict[str, str]] = []
    counts = {"delivered": 0, "retry": 0, "dead": 0}
    for record in records:
        job = WebhookJob.model_validate_json(record["body"])
        receives = int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))
        try:
            status, error = post_once(
                job.url, job.secret, job.kind, body_of(job), job.event_id, allow_private=allow_private, timeout=timeout
            )
        except WebhookRejected as exc:
            status, error = -1, str(exc)
        if 200 <= status < 300:
            counts["delivered"] += 1
            continue
        error = error or f"HTTP {status}"
        retryable = status == 0 or status in RETRYABLE
        if retryable and receives < attempts:
            delay = int(min(MAX_VISIBILITY, base * 2 ** (receives - 1)))
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=delay)
            failures.append({"itemIdentifier": record["messageId"]})
            counts["retry"] += 1
            continue
        dead = {
            "event_id": job.event_id,
            "type": job.kind,
            "url": job.url,
            "error": error,
            "attempts": receives,
            "body": body_of(job).decode(),
            "at": time.time(),
        }
        sqs.send_message(QueueUrl=dead_letter_url, MessageBody=json.dumps(dead))
        counts["dead"] += 1
    return {"batchItemFailures": failures, "counts": counts}


class CancelledWebhooks:
    """An API event sink (the api Lambda's): ``run.cancelled`` → the run's webhook job on the queue."""

    def __init__(self, store: Any, queue_url: str, sqs: Any = None) -> None:
        self.store, self.queue_url, self._sqs = store, queue_url, sqs

    def publish(self, kind: str, tenant: str, detail: dict[str, Any]) -> None:
        if kind != "run.cancelled" or not detail.get("run_id"):
            return
        run_id = str(detail["run_id"])
        found = run_webhook(self.store, run_id)
        if found is None or "cancelled" not in found[0].events:
            return
        hook, facts = found
        event_id = "evt_" + hashlib.sha256(f"{run_id}\0cancelled".encode()).hexdigest()[:32]
        data = {**facts, "status": "cancelled", **({"by": detail["by"]} if detail.get("by") else {})}
        job = WebhookJob(url=hook.url, secret=hook.secret, kind="run.cancelled", event_id=event_id, data=data, created=time.time())
        if self._sqs is None:
            from stepwise.awsclients import client

            self._sqs = client("sqs")
        send_jobs([job], self.queue_url, self._sqs)
