"""The WebSocket API (AWS): live run streams pushed with ``postToConnection``.

Routes (one Lambda, the ``api`` function):
- ``$connect`` authenticates like the REST API (``x-api-key`` / ``Authorization: Bearer`` header, or
  ``?api_key=`` for browsers, which cannot set headers on a WebSocket) and records the connection with
  its tenant; otherwise 401.
- a message ``{"action": "subscribe", "run_id": "...", "after": 0}`` subscribes the connection to one of
  the tenant's runs: the answer is the run's backlog after ``after`` (so nothing is lost between a
  reconnect and the subscription), then every new log event of the run is pushed as it is written.
  ``{"action": "unsubscribe", "run_id": ...}`` stops it. Another tenant's run answers ``run_not_found``.
- ``$disconnect`` forgets the connection and its subscriptions.

Fan-out: ``fan_out(records, ...)`` takes the events table's DynamoDB stream records (``INSERT`` of an
event item), finds the run's subscribers and posts each event as ``{"id": seq, "event": type, "data":
<event JSON>}`` — the same frames the SSE stream sends. A connection that is gone (410) is dropped.
On AWS the ``channels`` Lambda (functions/channels/handler.py) runs it, fed by the events table's stream.

Each subscription remembers the ``postToConnection`` endpoint of its connection, taken from the
request context API Gateway put on the subscribe message (``https://<domainName>/<stage>``): the
fan-out function needs no endpoint in its environment, so the stack has no function ↔ API cycle, and
a custom domain works as it is.

Connections and subscriptions live in the API table (pk/sk): ``ws#conn#<id>`` / ``meta`` (tenant, runs)
and ``ws#run#<run id>`` / ``conn#<id>`` (endpoint); ``MemoryConnections`` serves tests and local use.

``handle`` takes the API (``stepwise.api.facade.StepwiseApi``, which calls it for WebSocket events) as a
``WebSocketHost``: the three things it needs of it, so this module does not import the facade back.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any, Protocol

from stepwise.api.auth import AuthError, Principal
from stepwise.api.models import public_event

if TYPE_CHECKING:
    from stepwise.client import Stepwise


class Connections(Protocol):
    """WebSocket connections: their tenant and the runs each is subscribed to."""

    def connect(self, connection_id: str, tenant: str) -> None: ...
    def tenant_of(self, connection_id: str) -> str | None: ...
    def subscribe(self, connection_id: str, run_id: str, endpoint: str | None = None) -> None: ...
    def unsubscribe(self, connection_id: str, run_id: str) -> None: ...
    def subscribers(self, run_id: str) -> list[str]: ...
    def subscriptions(self, run_id: str) -> list[tuple[str, str | None]]: ...
    def disconnect(self, connection_id: str) -> None: ...


class MemoryConnections:
    """Connections kept in this process's memory (local serving and tests)."""

    def __init__(self) -> None:
        self._tenants: dict[str, str] = {}
        self._runs: dict[str, set[str]] = {}
        self._endpoints: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def connect(self, connection_id: str, tenant: str) -> None:
        self._tenants[connection_id] = tenant

    def tenant_of(self, connection_id: str) -> str | None:
        return self._tenants.get(connection_id)

    def subscribe(self, connection_id: str, run_id: str, endpoint: str | None = None) -> None:
        with self._lock:
            self._runs.setdefault(run_id, set()).add(connection_id)
            self._endpoints[connection_id] = endpoint

    def unsubscribe(self, connection_id: str, run_id: str) -> None:
        with self._lock:
            self._runs.get(run_id, set()).discard(connection_id)

    def subscribers(self, run_id: str) -> list[str]:
        return sorted(self._runs.get(run_id, ()))

    def subscriptions(self, run_id: str) -> list[tuple[str, str | None]]:
        return [(c, self._endpoints.get(c)) for c in self.subscribers(run_id)]

    def disconnect(self, connection_id: str) -> None:
        with self._lock:
            self._tenants.pop(connection_id, None)
            self._endpoints.pop(connection_id, None)
            for conns in self._runs.values():
                conns.discard(connection_id)


class DynamoConnections:
    """Connections and subscriptions in the API table (pk S, sk S)."""

    def __init__(self, table: str, db: Any = None) -> None:
        self.table = table
        if db is None:
            from stepwise.awsclients import client

            db = client("dynamodb")
        self.db = db

    def connect(self, connection_id: str, tenant: str) -> None:
        self.db.put_item(TableName=self.table, Item={"pk": {"S": f"ws#conn#{connection_id}"}, "sk": {"S": "meta"}, "tenant": {"S": tenant}})

    def tenant_of(self, connection_id: str) -> str | None:
        item = self.db.get_item(TableName=self.table, Key={"pk": {"S": f"ws#conn#{connection_id}"}, "sk": {"S": "meta"}}).get("Item")
        return item["tenant"]["S"] if item else None

    def subscribe(self, connection_id: str, run_id: str, endpoint: str | None = None) -> None:
        item = {"pk": {"S": f"ws#run#{run_id}"}, "sk": {"S": f"conn#{connection_id}"}}
        if endpoint:
            item["endpoint"] = {"S": endpoint}
        self.db.put_item(TableName=self.table, Item=item)
        self.db.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"ws#conn#{connection_id}"}, "sk": {"S": "meta"}},
            UpdateExpression="ADD runs :r",
            ExpressionAttributeValues={":r": {"SS": [run_id]}},
        )

    def unsubscribe(self, connection_id: str, run_id: str) -> None:
        self.db.delete_item(TableName=self.table, Key={"pk": {"S": f"ws#run#{run_id}"}, "sk": {"S": f"conn#{connection_id}"}})

    def subscribers(self, run_id: str) -> list[str]:
        return [connection_id for connection_id, _ in self.subscriptions(run_id)]

    def subscriptions(self, run_id: str) -> list[tuple[str, str | None]]:
        """(connection id, postToConnection endpoint) of each subscriber of the run."""
        out: list[tuple[str, str | None]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": f"ws#run#{run_id}"}},
        }
        while True:
            page = self.db.query(**kwargs)
            out += [(item["sk"]["S"].removeprefix("conn#"), (item.get("endpoint") or {}).get("S")) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def disconnect(self, connection_id: str) -> None:
        key = {"pk": {"S": f"ws#conn#{connection_id}"}, "sk": {"S": "meta"}}
        item = self.db.get_item(TableName=self.table, Key=key).get("Item") or {}
        for run_id in item.get("runs", {}).get("SS", []):
            self.unsubscribe(connection_id, run_id)
        self.db.delete_item(TableName=self.table, Key=key)


class WebSocketHost(Protocol):
    """What ``handle`` needs of the API: its connections, its authenticators and the engine client."""

    @property
    def ws_connections(self) -> Connections: ...
    @property
    def client(self) -> Stepwise: ...
    def authenticate(self, headers: dict[str, str], event: dict[str, Any]) -> Principal | None: ...


def is_websocket(event: dict[str, Any]) -> bool:
    context = event.get("requestContext") or {}
    return "connectionId" in context and "eventType" in context


def endpoint_of(event: dict[str, Any]) -> str | None:
    """The ``postToConnection`` endpoint of the connection an event came on: ``https://<domainName>/<stage>``
    from API Gateway's request context (set by API Gateway, not by the client)."""
    context = event.get("requestContext") or {}
    domain, stage = context.get("domainName"), context.get("stage")
    if not isinstance(domain, str) or not domain or not isinstance(stage, str) or not stage:
        return None
    return f"https://{domain}/{stage}"


def frame(e: Any) -> dict[str, Any]:
    """One pushed message: the same id/event/data as an SSE frame."""
    return {"id": e.seq, "event": e.type, "data": public_event(e)}


def _reply(body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(body, default=str)}


def handle(api: WebSocketHost, event: dict[str, Any]) -> dict[str, Any]:
    context = event["requestContext"]
    kind, connection_id = context["eventType"], str(context["connectionId"])
    connections: Connections = api.ws_connections
    if kind == "CONNECT":
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        key = (event.get("queryStringParameters") or {}).get("api_key")
        if key and "x-api-key" not in headers:
            headers["x-api-key"] = key
        try:
            principal = api.authenticate(headers, event)
        except AuthError:
            principal = None
        if principal is None:
            return {"statusCode": 401}
        connections.connect(connection_id, principal.tenant)
        return {"statusCode": 200}
    if kind == "DISCONNECT":
        connections.disconnect(connection_id)
        return {"statusCode": 200}
    tenant = connections.tenant_of(connection_id)
    if tenant is None:
        return _reply({"error": {"code": "unauthorized", "message": "unknown connection; reconnect with a key"}})
    try:
        message = json.loads(event.get("body") or "{}")
        action, run_id = message.get("action"), str(message.get("run_id") or "")
        after = int(message.get("after") or 0)
    except (ValueError, TypeError, AttributeError):
        return _reply({"error": {"code": "validation_error", "message": 'send {"action": "subscribe", "run_id": "...", "after": 0}'}})
    if action not in ("subscribe", "unsubscribe") or not run_id:
        return _reply({"error": {"code": "validation_error", "message": 'send {"action": "subscribe", "run_id": "...", "after": 0}'}})
    run = api.client.get_run(run_id)
    if run is None or run.tenant != tenant:
        return _reply({"error": {"code": "run_not_found", "message": f"no run {run_id!r}"}})
    if action == "unsubscribe":
        connections.unsubscribe(connection_id, run_id)
        return _reply({"unsubscribed": run_id})
    connections.subscribe(connection_id, run_id, endpoint_of(event))  # first, so no event falls between the backlog and the feed
    backlog = [frame(e) for e in api.client.run_events(run_id, after=after)]
    return _reply({"subscribed": run_id, "status": run.status, "events": backlog})


class ManagementApi:
    """``post(connection_id, data, endpoint)`` through API Gateway's Management API, one boto3 client per endpoint."""

    def __init__(self, factory: Any = None) -> None:
        if factory is None:
            from stepwise.awsclients import client

            factory = lambda endpoint: client("apigatewaymanagementapi", endpoint_url=endpoint)  # noqa: E731
        self._factory = factory
        self._clients: dict[str, Any] = {}

    def __call__(self, connection_id: str, data: bytes, endpoint: str | None) -> None:
        if not endpoint:
            raise ValueError(f"connection {connection_id} has no postToConnection endpoint (subscribed without a request context)")
        if endpoint not in self._clients:
            self._clients[endpoint] = self._factory(endpoint)
        self._clients[endpoint].post_to_connection(ConnectionId=connection_id, Data=data)


def fan_out(records: list[dict[str, Any]], connections: Connections, post: Any) -> dict[str, int]:
    """Push each inserted event item (DynamoDB stream records of the events table) to its run's
    subscribers. ``post(connection_id, data: bytes, endpoint)`` is ``postToConnection`` (``ManagementApi``);
    a gone connection is dropped."""
    from stepwise.state.events import Event, decode

    counts = {"events": 0, "posted": 0, "gone": 0}
    for record in records:
        image = (record.get("dynamodb") or {}).get("NewImage")
        if record.get("eventName") != "INSERT" or not image or "run_id" not in image or "seq" not in image:
            continue
        data = image.get("data", {}).get("S")  # large payloads sit in S3 (data_ref): read them over REST
        e = Event(
            type=image["type"]["S"],
            run_id=image["run_id"]["S"],
            node=(image.get("node") or {}).get("S"),
            scope=(image.get("scope") or {}).get("S", ""),
            seq=int(image["seq"]["N"]),
            ts=float((image.get("ts") or {}).get("N", 0)),
            data=decode(data) if data else {"offloaded": True},
        )
        counts["events"] += 1
        payload = json.dumps(frame(e), default=str).encode()
        for connection_id, endpoint in connections.subscriptions(e.run_id):
            try:
                post(connection_id, payload, endpoint)
                counts["posted"] += 1
            except Exception as exc:  # a gone client must not stop the others; anything else is raised
                if type(exc).__name__ == "GoneException" or "410" in str(exc):
                    counts["gone"] += 1
                    connections.unsubscribe(connection_id, e.run_id)
                else:
                    raise
    return counts
