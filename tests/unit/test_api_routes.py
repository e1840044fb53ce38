"""The HTTPS API handler, called with API Gateway proxy events, over an in-memory engine and store."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stepwise.api.app import create_app
from stepwise.api.auth import Principal
from stepwise.api.facade import StepwiseApi
from stepwise.api.hooks import RateLimited, RecordingSink
from stepwise.api.keys import create_key, revoke_key
from stepwise.api.settings import ApiSettings
from stepwise.api.stream import event_frame
from stepwise.api.websocket import frame as websocket_frame
from stepwise.client import Stepwise
from stepwise.store.memory import MemoryApiStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "statemachines" / "examples"


def event(
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    hdrs = {"content-type": "application/json", **({"x-api-key": key} if key else {}), **(headers or {})}
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": query,
        "pathParameters": None,
        "requestContext": {"requestId": "req-1", "stage": "test"},
        "body": text,
        "isBase64Encoded": False,
    }


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, Any]


@dataclass
class Harness:
    api: StepwiseApi
    client: Stepwise
    store: MemoryApiStore
    keys: dict[str, str]
    sink: RecordingSink
    key_ids: dict[str, str] = field(default_factory=dict)

    def __call__(
        self, method: str, path: str, body: Any = None, *, tenant: str | None = "acme", key: str | None = None, **kw: Any
    ) -> Reply:
        key = key if key is not None else (self.keys[tenant] if tenant else None)
        out = self.api(event(method, path, body, key=key, **kw))
        headers = dict(out.get("headers") or {})
        headers.update({k: v[0] for k, v in (out.get("multiValueHeaders") or {}).items()})
        return Reply(out["statusCode"], json.loads(out["body"]) if out.get("body") else None, headers)

    def register(self, example: str, tenant: str = "acme") -> dict[str, Any]:
        reply = self("POST", "/agents", {"yaml": (EXAMPLES / f"{example}.yaml").read_text()}, tenant=tenant)
        assert reply.status == 201, reply.body
        return reply.body  # type: ignore[no-any-return]


def make(settings: ApiSettings | None = None, client: Stepwise | None = None, **kw: Any) -> Harness:
    store = MemoryApiStore()
    client = client or Stepwise.in_memory()
    sink = RecordingSink()
    keys, ids = {}, {}
    for tenant in ("acme", "globex"):
        record, plaintext = create_key(store, tenant, f"{tenant} test key")
        keys[tenant], ids[tenant] = plaintext, record.key_id
    api = create_app(lambda: client, store=store, settings=settings or ApiSettings(backend="memory"), events=sink, **kw)
    return Harness(api, client, store, keys, sink, ids)


@pytest.fixture
def h() -> Harness:
    return make()


def error_code(reply: Reply) -> str:
    assert set(reply.body) == {"error"}, reply.body
    return str(reply.body["error"]["code"])


# -- meta and auth --------------------------------------------------------------------------------
def test_health_and_openapi_need_no_key(h: Harness) -> None:
    assert h("GET", "/health", tenant=None).body["status"] == "ok"
    doc = h("GET", "/openapi.json", tenant=None).body
    assert "/agents/{agent_id}/execute" in doc["paths"]


@pytest.mark.parametrize(
    ("key", "message"),
    [(None, "send an API key"), ("nonsense", "malformed"), ("swk_acme_0123456789abcdef_wrong", "unknown API key")],
)
def test_requests_without_a_valid_key_are_401(h: Harness, key: str | None, message: str) -> None:
    reply = h("GET", "/agents", tenant=None, key=key or "")
    assert reply.status == 401 and error_code(reply) == "unauthorized"
    assert message in reply.body["error"]["message"]
    assert reply.headers["WWW-Authenticate"] == "Bearer"


def test_a_right_key_id_with_a_wrong_secret_is_401(h: Harness) -> None:
    tampered = h.keys["acme"][:-4] + "AAAA"
    assert h("GET", "/agents", key=tampered).status == 401


def test_bearer_header_is_accepted(h: Harness) -> None:
    reply = h("GET", "/agents", tenant=None, headers={"authorization": f"Bearer {h.keys['acme']}"})
    assert reply.status == 200 and reply.body == {"agents": []}


def test_two_different_credentials_are_refused_whichever_is_valid(h: Harness) -> None:
    """x-api-key of one tenant with a Bearer of another must not pick one by the order authenticators run."""
    both = {"authorization": f"Bearer {h.keys['globex']}"}
    reply = h("GET", "/agents", headers=both)  # x-api-key: acme's key
    assert reply.status == 401 and "two credentials" in reply.body["error"]["message"]
    twice = h("GET", "/agents", tenant=None, headers={"x-api-key": f"{h.keys['acme']}, {h.keys['acme']}"})  # a repeated header
    assert twice.status == 401 and "several x-api-key headers" in twice.body["error"]["message"]
    same = {"authorization": f"Bearer {h.keys['acme']}"}
    assert h("GET", "/agents", headers=same).status == 200  # the same key twice is one credential


def test_revoked_key_gets_401_and_other_keys_keep_working(h: Harness) -> None:
    assert h("GET", "/agents").status == 200
    revoke_key(h.store, "acme", h.key_ids["acme"])
    reply = h("GET", "/agents")
    assert reply.status == 401 and "revoked" in reply.body["error"]["message"]
    assert h("GET", "/agents", tenant="globex").status == 200


def test_unknown_route_is_a_json_404(h: Harness) -> None:
    reply = h("GET", "/nowhere")
    assert reply.status == 404 and error_code(reply) == "not_found"


def test_oversized_body_is_413() -> None:
    h = make(ApiSettings(backend="memory", api_max_body_bytes=2048))
    reply = h("POST", "/agents", {"yaml": "x" * 4096})
    assert reply.status == 413 and error_code(reply) == "payload_too_large"


def test_internal_errors_are_500_without_details() -> None:
    store = MemoryApiStore()
    _, key = create_key(store, "acme")
    store.create_agent("acme", "a", "a@123")

    def broken() -> Stepwise:
        raise RuntimeError("password=hunter2")

    api = create_app(broken, store=store, settings=ApiSettings(backend="memory"))
    out = api(event("POST", "/agents/a/execute", {}, key=key))
    assert out["statusCode"] == 500
    assert "hunter2" not in out["body"] and json.loads(out["body"])["error"]["code"] == "internal"


# -- agents ---------------------------------------------------------------------------------------
def test_register_from_yaml_json_and_raw_yaml_body(h: Harness) -> None:
    text = (EXAMPLES / "sequential.yaml").read_text()
    first = h("POST", "/agents", {"yaml": text, "description": "three steps"})
    assert first.status == 201
    assert first.body["agent"] == "sequential" and first.body["version"] == 1 and first.body["ref"].startswith("sequential@")
    assert first.body["aliases"] == {"live": 1}

    graph = {
        "name": "tiny",
        "graph": {"nodes": {"only": {"kind": "function", "fn": "statemachines.examples.nodes:fetch"}}, "entry": "only"},
    }
    assert h("POST", "/agents", {"graph": graph}).status == 201
    raw = h("POST", "/agents", (EXAMPLES / "conditional.yaml").read_text(), headers={"content-type": "application/yaml"})
    assert raw.status == 201 and raw.body["agent"] == "support-router"

    listed = h("GET", "/agents").body["agents"]
    assert sorted(a["id"] for a in listed) == sorted(["sequential", "tiny", "support-router"])
    agent = h("GET", "/agents/sequential").body
    assert agent["description"] == "three steps"
    assert [v["ref"] for v in agent["versions"]] == [first.body["ref"]]
    assert h("POST", "/agents", {"yaml": text}).body["error"]["code"] == "agent_exists"


def test_unknown_agent_is_404(h: Harness) -> None:
    for method, path, body in [
        ("GET", "/agents/ghost", None),
        ("POST", "/agents/ghost/execute", {}),
        ("POST", "/agents/ghost/versions", {"yaml": "x"}),
    ]:
        reply = h(method, path, body)
        assert reply.status == 404 and error_code(reply) == "agent_not_found", (method, path)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"yml": "name: x"}, "body.yml"),  # unknown key
        ({"yaml": 12}, "body.yaml"),  # wrong type
        ({"yaml": "a", "graph": {"name": "a"}}, "body.yaml"),  # both forms
        ({}, "body.yaml"),  # neither form
        ({"graph": {"name": "x"}, "id": "has space"}, "body.id"),  # bad id
    ],
)
def test_bad_register_bodies_are_422_naming_the_field(h: Harness, body: dict[str, Any], field: str) -> None:
    reply = h("POST", "/agents", body)
    assert reply.status == 422 and error_code(reply) == "validation_error"
    assert field in [d["field"] for d in reply.body["error"]["details"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"wait_seconds": "5"}, "body.wait_seconds"),  # a numeric string is not a number
        ({"background": "yes"}, "body.background"),  # nor a word a boolean
        ({"background": 1}, "body.background"),
        ({"version": "1"}, "body.version"),
        ({"version": 1.0}, "body.version"),
        ({"webhook": {"url": "https://example.com/h", "secret": "s" * 32, "events": "failed"}}, "body.webhook.events"),
    ],
)
def test_execute_bodies_take_json_types_as_documented_and_no_others(h: Harness, body: dict[str, Any], field: str) -> None:
    """Every body is strict alike: "5" for a number was taken (and "yes" for true) while "1" for a version was not."""
    h.register("sequential")
    reply = h("POST", "/agents/sequential/execute", body)
    assert reply.status == 422 and error_code(reply) == "validation_error"
    assert field in [d["field"] for d in reply.body["error"]["details"]]
    assert h("POST", "/agents/sequential/execute", {"wait_seconds": 5, "background": False, "version": 1}).status == 200


def test_missing_body_is_422(h: Harness) -> None:
    reply = h("POST", "/agents", None)
    assert reply.status == 422 and reply.body["error"]["details"][0]["field"] == "body"


def test_invalid_graph_is_422_with_node_and_fix(h: Harness) -> None:
    text = (
        "name: broken\ngraph:\n  nodes:\n    a: {kind: function, fn: 'statemachines.examples.nodes:fetch'}\n"
        "  edges:\n    - {from: a, to: ghost}\n  entry: a\n"
    )
    reply = h("POST", "/agents", {"yaml": text})
    assert reply.status == 422 and error_code(reply) == "invalid_graph"
    problem = reply.body["error"]["details"][0]
    assert problem["node"] == "a" and "ghost" in problem["message"] and problem["fix"]


def test_malformed_yaml_names_the_line(h: Harness) -> None:
    reply = h("POST", "/agents", {"yaml": "name: x\ngraph:\n  nodes: [a\n"})
    assert reply.status == 422 and reply.body["error"]["details"][0]["line"] >= 3


def test_agent_id_must_match_graph_name(h: Harness) -> None:
    reply = h("POST", "/agents", {"id": "other", "yaml": (EXAMPLES / "sequential.yaml").read_text()})
    assert reply.status == 422 and reply.body["error"]["details"][0]["field"] == "body.graph.name"


def test_versions_are_immutable_numbered_and_move_live(h: Harness) -> None:
    base = (EXAMPLES / "sequential.yaml").read_text()
    v1 = h.register("sequential")
    v2 = h("POST", "/agents/sequential/versions", {"yaml": base + "description: second\n"})
    assert v2.status == 201 and v2.body["version"] == 2 and v2.body["ref"] != v1["ref"] and v2.body["aliases"]["live"] == 2
    same = h("POST", "/agents/sequential/versions", {"yaml": base})
    assert same.status == 200 and same.body == {**same.body, "version": 1, "created": False, "ref": v1["ref"]}
    assert same.body["aliases"]["live"] == 1  # promote=True moved live back to the existing version
    v3 = h("POST", "/agents/sequential/versions", {"yaml": base + "description: third\n", "promote": False})
    assert v3.body["version"] == 3 and v3.body["aliases"]["live"] == 1
    agent = h("GET", "/agents/sequential").body
    assert [v["version"] for v in agent["versions"]] == [1, 2, 3]

    aliased = h("PUT", "/agents/sequential/aliases/canary", {"version": 3})
    assert aliased.status == 200 and aliased.body["aliases"] == {"live": 1, "canary": 3}
    run = h("POST", "/agents/sequential/execute", {"alias": "canary"}).body
    assert run["version"] == 3 and run["graph_ref"] == v3.body["ref"]
    run = h("POST", "/agents/sequential/execute", {"version": 2}).body
    assert run["version"] == 2 and run["graph_ref"] == v2.body["ref"]
    assert h("POST", "/agents/sequential/execute", {"version": 9}).body["error"]["code"] == "version_not_found"
    assert h("POST", "/agents/sequential/execute", {"alias": "nope"}).body["error"]["code"] == "alias_not_found"
    both = h("POST", "/agents/sequential/execute", {"version": 1, "alias": "canary"})  # it ran 1, ignoring the alias
    assert both.status == 422 and both.body["error"]["details"][0]["field"] == "body.alias"
    for name in ("a" * 41, "..%2F..%2Fx", "a b", "été"):  # execute refuses such a name: it could never be used
        refused = h("PUT", f"/agents/sequential/aliases/{name}", {"version": 1})
        assert refused.status == 422 and refused.body["error"]["details"][0]["field"] == "path.alias", name
    bad = h("PUT", "/agents/sequential/aliases/canary", {"version": 7})
    assert bad.status == 404 and bad.body["error"]["code"] == "version_not_found"  # as execute answers an unknown version
    assert bad.body["error"]["details"][0]["field"] == "body.version"


def test_a_new_version_must_keep_the_agent_name(h: Harness) -> None:
    h.register("sequential")
    reply = h("POST", "/agents/sequential/versions", {"yaml": (EXAMPLES / "conditional.yaml").read_text()})
    assert reply.status == 422 and "make them equal" in reply.body["error"]["message"]


# -- the graph policy -----------------------------------------------------------------------------
def _graph(fn: str, **extra: Any) -> dict[str, Any]:
    return {"name": "g", **extra, "graph": {"nodes": {"a": {"kind": "function", "fn": fn}}, "entry": "a"}}


@pytest.mark.parametrize(
    ("graph", "needle"),
    [
        (_graph("os:system"), "'os:system' is not an allowed import path"),
        (_graph("statemachines.examples.nodes:_private"), "not an allowed import path"),
        (_graph("statemachines_evil.x:f"), "not an allowed import path"),  # a prefix, not a package boundary
        (_graph("statemachines.examples.nodes:fetch", state={"log": "subprocess:getoutput"}), "reducer of channel 'log'"),
        (
            {"name": "g", "graph": {"nodes": {"a": {"kind": "agent", "script": "/etc/passwd"}}, "entry": "a"}},
            "does not read server files",
        ),
        (
            {"name": "g", "graph": {"nodes": {"a": {"kind": "subgraph", "graph": "../../secrets.yaml"}}, "entry": "a"}},
            "does not read server files",
        ),
    ],
)
def test_policy_refuses_code_outside_the_allowlist_and_file_references(h: Harness, graph: dict[str, Any], needle: str) -> None:
    reply = h("POST", "/agents", {"graph": graph})
    assert reply.status == 422 and error_code(reply) == "invalid_graph"
    assert needle in reply.body["error"]["message"]
    assert h("GET", "/agents").body == {"agents": []}


def test_policy_refuses_yaml_alias_bombs_but_allows_reuse(h: Harness) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10**9 values once expanded
    bomb = "name: g\n" + "\n".join(f"x{line}" for line in levels) + "\ngraph: {nodes: {a: {fn: 'statemachines.examples.nodes:fetch'}}}\n"
    reply = h("POST", "/agents", {"yaml": bomb})
    assert reply.status == 422 and "expands to more than" in reply.body["error"]["message"]
    reuse = (
        "name: g\ngraph:\n  nodes:\n    a: {fn: &f 'statemachines.examples.nodes:fetch'}\n    b: {fn: *f}\n"
        "  edges: [{from: a, to: b}]\n  entry: a\n"
    )
    assert h("POST", "/agents", {"yaml": reuse}).status == 201


def test_policy_checks_inlined_subgraphs(h: Harness) -> None:
    inner_bad = {"name": "inner", "graph": {"nodes": {"x": {"kind": "function", "fn": "os:getcwd"}}, "entry": "x"}}
    outer = {"name": "outer", "graph": {"nodes": {"sub": {"kind": "subgraph", "subgraph_spec": inner_bad}}, "entry": "sub"}}
    reply = h("POST", "/agents", {"graph": outer})
    assert reply.status == 422 and reply.body["error"]["details"][0]["node"] == "sub/x"

    inner_spec = {
        "name": "inner",
        "state": {"log": "append"},
        "graph": {
            "nodes": {"fetch": {"fn": "statemachines.examples.nodes:fetch"}, "clean": {"fn": "statemachines.examples.nodes:clean"}},
            "edges": [{"from": "fetch", "to": "clean"}],
            "entry": "fetch",
        },
    }
    ok = {
        "name": "outer",
        "state": {"log": "append"},
        "graph": {"nodes": {"sub": {"kind": "subgraph", "subgraph_spec": inner_spec}}, "entry": "sub"},
    }
    assert h("POST", "/agents", {"graph": ok}).status == 201
    run = h("POST", "/agents/outer/execute", {}).body
    assert run["status"] == "succeeded" and len(run["state"]["log"]) == 2


def test_allowlist_comes_from_settings_and_is_rechecked_at_execute() -> None:
    wide = make(ApiSettings(backend="memory"))
    wide.register("react")  # uses stepwise.tools.react:run_tool_calls
    narrow = create_app(lambda: wide.client, store=wide.store, settings=ApiSettings(backend="memory", api_allowed_modules="statemachines."))
    out = narrow(event("POST", "/agents/react/execute", {}, key=wide.keys["acme"]))
    assert out["statusCode"] == 403 and json.loads(out["body"])["error"]["code"] == "policy_violation"
    out = narrow(event("POST", "/agents", {"yaml": (EXAMPLES / "react.yaml").read_text()}, key=wide.keys["globex"]))
    assert out["statusCode"] == 422 and "stepwise.tools.react:run_tool_calls" in json.loads(out["body"])["error"]["message"]


# -- runs -----------------------------------------------------------------------------------------
def test_execute_runs_to_completion_and_get_run_returns_the_state(h: Harness) -> None:
    h.register("sequential")
    run = h("POST", "/agents/sequential/execute", {"input": {"url": "https://example.test"}})
    assert run.status == 200 and run.body["status"] == "succeeded" and run.body["version"] == 1
    assert run.body["state"]["log"] == ["fetch", "clean", "summarize"] and run.body["state"]["url"] == "https://example.test"
    again = h("GET", f"/runs/{run.body['run_id']}").body
    assert again["state"] == run.body["state"] and again["status"] == "succeeded" and again["steps"] == 3


def test_execute_body_errors_name_the_field(h: Harness) -> None:
    h.register("sequential")
    for body, name in [
        ({"input": [1]}, "body.input"),
        ({"wait_seconds": -1}, "body.wait_seconds"),
        ({"version": 0}, "body.version"),
        ({"thread_id": "../x"}, "body.thread_id"),
        ({"inputs": {}}, "body.inputs"),
    ]:
        reply = h("POST", "/agents/sequential/execute", body)
        assert reply.status == 422, body
        assert name in [d["field"] for d in reply.body["error"]["details"]], reply.body


def test_human_flow_waits_then_resumes_through_the_api(h: Harness) -> None:
    h.register("human_approval")
    run = h("POST", "/agents/human-approval/execute", {"input": {"amount": 40}}).body
    assert run["status"] == "waiting" and run["waiting"]["node"] == "approve" and "Approve" in run["waiting"]["prompt"]
    assert "token" not in json.dumps(run["waiting"])  # the task token never leaves the server
    resumed = h("POST", f"/runs/{run['run_id']}/resume", {"input": {"decision": "yes"}})
    assert resumed.status == 200 and resumed.body["status"] == "succeeded"
    assert resumed.body["state"]["decision"] == "yes" and resumed.body["waiting"] is None
    again = h("POST", f"/runs/{run['run_id']}/resume", {"input": {"decision": "yes"}})
    assert again.status == 409 and error_code(again) == "run_not_waiting"
    assert h("POST", "/runs/run-nope/resume", {}).status == 404
    kinds = [k for k, _, _ in h.sink.events]
    assert kinds == ["agent.registered", "run.started", "run.waiting", "run.resumed", "run.succeeded"]


def test_events_and_stream_never_carry_the_task_token(h: Harness) -> None:
    h.register("human_approval")
    run = h("POST", "/agents/human-approval/execute", {"input": {"amount": 40}}).body
    page = h("GET", f"/runs/{run['run_id']}/events").body
    [interrupt] = [e for e in page["events"] if e["type"] == "interrupt"]
    assert interrupt["node"] == "approve" and "prompt" in interrupt["data"]
    assert "token" not in interrupt["data"] and "payload" not in interrupt["data"]
    events = h.client.run_events(run["run_id"])  # the log itself keeps the token for the engine
    [logged] = [e for e in events if e.type == "interrupt"]
    assert logged.data["token"]
    frame, ws = event_frame(logged).decode(), websocket_frame(logged)
    assert "approve" in frame and "token" not in frame and "token" not in ws["data"]["data"]


def test_resume_body_must_be_an_object(h: Harness) -> None:
    h.register("human_approval")
    run = h("POST", "/agents/human-approval/execute", {}).body
    reply = h("POST", f"/runs/{run['run_id']}/resume", {"input": "yes"})
    assert reply.status == 422 and reply.body["error"]["details"][0]["field"] == "body.input"


def test_run_events_are_that_runs_events_paged_by_seq(h: Harness) -> None:
    h.register("sequential")
    first = h("POST", "/agents/sequential/execute", {}).body
    second = h("POST", "/agents/sequential/execute", {"thread_id": first["thread_id"]}).body  # same thread
    assert second["thread_id"] == first["thread_id"]
    page = h("GET", f"/runs/{second['run_id']}/events", query={"limit": "2"}).body
    assert [e["type"] for e in page["events"]] == ["run_started", "node_update"]
    assert {e["run_id"] for e in page["events"]} == {second["run_id"]}
    rest = h("GET", f"/runs/{second['run_id']}/events", query={"after": str(page["next_after"]), "limit": "1000"}).body
    assert rest["next_after"] is None and rest["events"][-1]["type"] == "run_finished"
    seqs = [e["seq"] for e in page["events"] + rest["events"]]
    assert seqs == sorted(seqs) and min(seqs) > max(e["seq"] for e in h("GET", f"/runs/{first['run_id']}/events").body["events"])
    bad = h("GET", f"/runs/{first['run_id']}/events", query={"limit": "0"})
    assert bad.status == 422 and bad.body["error"]["details"][0]["field"] == "query.limit"


def test_cancel_a_waiting_run(h: Harness) -> None:
    h.register("human_approval")
    run = h("POST", "/agents/human-approval/execute", {}).body
    cancelled = h("POST", f"/runs/{run['run_id']}/cancel")
    assert cancelled.status == 200 and cancelled.body["status"] == "cancelled" and cancelled.body["finished_at"]
    assert h("POST", f"/runs/{run['run_id']}/resume", {"input": {"decision": "yes"}}).body["error"]["code"] == "run_not_waiting"
    assert h("POST", f"/runs/{run['run_id']}/cancel").body["error"]["code"] == "run_finished"


def test_cancel_asks_an_executor_that_can_stop_executions() -> None:
    stopped: list[str] = []
    client = Stepwise.in_memory()
    client.executor.stop = lambda run, cause: stopped.append((run.run_id, cause))  # type: ignore[attr-defined]
    h = make(client=client)
    h.register("human_approval")
    run = h("POST", "/agents/human-approval/execute", {}).body
    assert h("POST", f"/runs/{run['run_id']}/cancel").status == 200
    assert stopped == [(run["run_id"], f"cancelled through the API by key:{h.key_ids['acme']}")]


class AsyncExecutor:
    """Like Step Functions: start returns at once; the run finishes 'later' (when the API sleeps)."""

    def __init__(self, client: Stepwise, finish_after_sleeps: int) -> None:
        self.client, self.left, self.run_id = client, finish_after_sleeps, ""

    def deploy(self, ref: str, asl: dict[str, Any]) -> None:
        return None

    def start(self, run: Any, asl: dict[str, Any]) -> None:
        self.run_id = run.run_id

    def send_token(self, run: Any, token: str, output: dict[str, Any]) -> None:
        return None

    def tick(self, seconds: float) -> None:
        self.left -= 1
        if self.left == 0:
            self.client.services.runs.update(self.run_id, status="succeeded")


def _async_harness(finish_after_sleeps: int, max_wait: float = 25) -> tuple[Harness, list[float]]:
    client = Stepwise.in_memory()
    executor = AsyncExecutor(client, finish_after_sleeps)
    client.executor = executor
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        executor.tick(seconds)

    return make(ApiSettings(backend="memory", api_max_wait_seconds=max_wait), client=client, sleep=sleep, clock=lambda: now[0]), slept


def test_execute_without_wait_answers_202_running() -> None:
    h, slept = _async_harness(finish_after_sleeps=3)
    h.register("sequential")
    reply = h("POST", "/agents/sequential/execute", {})
    assert reply.status == 202 and reply.body["status"] == "running" and slept == []
    assert h("GET", f"/runs/{reply.body['run_id']}").body["status"] == "running"


def test_execute_with_wait_polls_the_run_store_until_done() -> None:
    h, slept = _async_harness(finish_after_sleeps=3)
    h.register("sequential")
    reply = h("POST", "/agents/sequential/execute", {"wait_seconds": 10})
    assert reply.status == 200 and reply.body["status"] == "succeeded" and len(slept) == 3


def test_wait_is_capped_by_the_server() -> None:
    h, slept = _async_harness(finish_after_sleeps=1000, max_wait=2)
    h.register("sequential")
    reply = h("POST", "/agents/sequential/execute", {"wait_seconds": 600})
    assert reply.status == 202 and sum(slept) == pytest.approx(2.0)


# -- threads --------------------------------------------------------------------------------------
def test_thread_state_time_travel_and_fork(h: Harness) -> None:
    h.register("sequential")
    run = h("POST", "/agents/sequential/execute", {"input": {"topic": "x"}}).body
    thread = run["thread_id"]
    now = h("GET", f"/threads/{thread}/state").body
    assert now["state"] == run["state"] and now["seq"] == now["head"]
    at1 = h("GET", f"/threads/{thread}/state", query={"at": "1"}).body
    assert at1["seq"] == 1 and at1["state"] == {"topic": "x"}
    too_far = h("GET", f"/threads/{thread}/state", query={"at": str(now["head"] + 1)})
    assert too_far.status == 422 and too_far.body["error"]["details"][0]["field"] == "query.at"
    negative = h("GET", f"/threads/{thread}/state", query={"at": "-1"})
    assert negative.status == 422 and negative.body["error"]["details"][0]["field"] == "query.at"

    forked = h("POST", f"/threads/{thread}/fork", {"at": 2})
    assert forked.status == 201 and forked.body["forked_from"] == thread and forked.body["at"] == 2
    fork_state = h("GET", f"/threads/{forked.body['thread_id']}/state").body["state"]
    assert fork_state == h("GET", f"/threads/{thread}/state", query={"at": "2"}).body["state"]
    at_head = h("POST", f"/threads/{thread}/fork", {})
    assert at_head.body["at"] == now["head"]
    assert h("POST", f"/threads/{thread}/fork", {"at": 999}).body["error"]["details"][0]["field"] == "body.at"
    assert h("GET", "/threads/thread-ghost/state").status == 404

    # a run continues on the fork, from the forked state
    cont = h("POST", "/agents/sequential/execute", {"thread_id": forked.body["thread_id"]}).body
    assert cont["status"] == "succeeded" and cont["state"]["topic"] == "x"


# -- tenants --------------------------------------------------------------------------------------
def test_tenants_never_see_each_other(h: Harness) -> None:
    h.register("human_approval")
    run = h("POST", "/agents/human-approval/execute", {}).body
    rid, thread = run["run_id"], run["thread_id"]
    forked = h("POST", f"/threads/{thread}/fork", {"at": 1}).body["thread_id"]

    other = dict(tenant="globex")
    assert h("GET", "/agents", **other).body == {"agents": []}
    for method, path, body in [
        ("GET", "/agents/human-approval", None),
        ("POST", "/agents/human-approval/execute", {}),
        ("POST", "/agents/human-approval/versions", {"yaml": (EXAMPLES / "human_approval.yaml").read_text()}),
        ("GET", f"/runs/{rid}", None),
        ("GET", f"/runs/{rid}/events", None),
        ("POST", f"/runs/{rid}/resume", {"input": {"decision": "yes"}}),
        ("POST", f"/runs/{rid}/cancel", None),
        ("GET", f"/threads/{thread}/state", None),
        ("POST", f"/threads/{thread}/fork", {}),
        ("GET", f"/threads/{forked}/state", None),
    ]:
        reply = h(method, path, body, **other)
        assert reply.status == 404, (method, path, reply.body)
        assert "globex" not in json.dumps(reply.body) and "acme" not in json.dumps(reply.body)

    # globex may use the same agent name independently, and the same thread name: it gets a thread of its own
    mine = h.register("human_approval", tenant="globex")
    assert mine["version"] == 1
    acme_state = h("GET", f"/threads/{thread}/state").body
    taken = h("POST", "/agents/human-approval/execute", {"thread_id": thread, "input": {"amount": 7}}, **other)
    unused = h("POST", "/agents/human-approval/execute", {"thread_id": "never-used", "input": {"amount": 7}}, **other)
    assert taken.status == unused.status and taken.body["status"] == unused.body["status"] == "waiting"  # no tell
    assert taken.body["thread_id"] == thread and taken.body["state"] == unused.body["state"]
    assert taken.body["state"]["amount"] == 7 and acme_state["state"].get("amount") != 7
    assert h("GET", f"/threads/{thread}/state").body == acme_state  # acme's thread untouched
    assert h("GET", f"/runs/{rid}").body["status"] == "waiting"  # acme's run untouched
    assert h.client.services.runs.get(rid).tenant == "acme"  # type: ignore[union-attr]
    engine_thread = h.client.services.runs.get(taken.body["run_id"]).thread_id  # type: ignore[union-attr]
    assert engine_thread != thread and engine_thread.startswith(thread + "~")

    # under that name globex reads, resumes and forks its own thread, and sees only its own runs
    assert h("GET", f"/threads/{thread}/state", **other).body["state"]["amount"] == 7
    assert h("POST", f"/runs/{taken.body['run_id']}/resume", {"input": {"decision": "yes"}}, **other).body["thread_id"] == thread
    timeline = h("GET", f"/threads/{thread}/events", **other).body
    assert [r["run_id"] for r in timeline["runs"]] == [taken.body["run_id"]] and timeline["thread_id"] == thread
    fork = h("POST", f"/threads/{thread}/fork", {"at": 1}, **other).body
    assert (
        fork["forked_from"] == thread
        and h("GET", f"/threads/{fork['thread_id']}/events", **other).body["forked_from"]["forked_from"] == thread
    )
    assert [r["thread_id"] for r in h("GET", "/runs", **other).body["runs"]] == ["never-used", thread]


def test_rate_limit_seam_answers_429_with_retry_after() -> None:
    class OneCall:
        def __init__(self) -> None:
            self.seen: list[tuple[str, str]] = []

        def check(self, principal: Principal, operation: str) -> None:
            self.seen.append((principal.tenant, operation))
            if len(self.seen) > 1:
                raise RateLimited(retry_after=2.4)

    limiter = OneCall()
    h = make(rate_limiter=limiter)
    assert h("GET", "/agents").status == 200
    reply = h("GET", "/agents")
    # Retry-After rounds up: a client that waits 2 s of a 2.4 s wait would be refused again
    assert reply.status == 429 and reply.headers["Retry-After"] == "3" and error_code(reply) == "rate_limited"
    assert limiter.seen == [("acme", "GET /agents"), ("acme", "GET /agents")]


def test_custom_authenticator_seam() -> None:
    class HeaderTenant:  # stands in for a JWT authenticator reading authorizer claims
        def authenticate(self, headers: dict[str, str], event: dict[str, Any]) -> Principal | None:
            claims = (event.get("requestContext") or {}).get("authorizer") or {}
            return Principal(tenant=claims["tenant"], subject=claims["sub"], method="jwt") if "tenant" in claims else None

    store = MemoryApiStore()
    client = Stepwise.in_memory()
    api = create_app(lambda: client, store=store, settings=ApiSettings(backend="memory"), authenticators=[HeaderTenant()])
    ev = event("GET", "/agents")
    ev["requestContext"]["authorizer"] = {"tenant": "initech", "sub": "user-1"}
    assert api(ev)["statusCode"] == 200
    assert api(event("GET", "/agents"))["statusCode"] == 401


# -- WebSocket (thin routes) ----------------------------------------------------------------------
def ws_event(kind: str, *, headers: dict[str, str] | None = None, query: dict[str, str] | None = None) -> dict[str, Any]:
    route = {"CONNECT": "$connect", "DISCONNECT": "$disconnect", "MESSAGE": "$default"}[kind]
    return {
        "headers": headers or {},
        "queryStringParameters": query,
        "body": "{}" if kind == "MESSAGE" else None,
        "requestContext": {"eventType": kind, "routeKey": route, "connectionId": "c-1", "requestId": "w-1"},
    }


def test_websocket_connect_needs_a_key(h: Harness) -> None:
    assert h.api(ws_event("CONNECT"))["statusCode"] == 401
    assert h.api(ws_event("CONNECT", headers={"X-Api-Key": h.keys["acme"]}))["statusCode"] == 200
    assert h.api(ws_event("CONNECT", query={"api_key": h.keys["globex"]}))["statusCode"] == 200
    assert h.api(ws_event("CONNECT", query={"api_key": "swk_acme_0123456789abcdef_nope"}))["statusCode"] == 401
    assert h.api(ws_event("DISCONNECT"))["statusCode"] == 200
    reply = h.api(ws_event("MESSAGE"))  # after $disconnect the connection is unknown (streaming: test_api_websocket.py)
    assert reply["statusCode"] == 200 and json.loads(reply["body"])["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", ""])
def test_json_body_sent_without_a_json_content_type_is_read_as_json(h: Harness, content_type: str) -> None:
    """`curl -d '{...}'` sends form encoding by default; a JSON-looking body is still read as JSON."""
    h.register("conditional")
    reply = h("POST", "/agents/support-router/execute", {"input": {"type": "A"}}, headers={"content-type": content_type})
    assert reply.status == 200, reply.body
    assert reply.body["state"]["trail"] == ["evaluate", "handle_billing"]


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        ({}, "no answer was given"),
        ({"decison": "yes"}, "unexpected key 'decison' (did you mean 'decision'?"),
        ({"decision": "maybe"}, '\'decision\' is \'maybe\'; allowed: "yes", "no", "revise"'),
        ({"decision": "no", "comment": 3}, "'comment' must be a string"),
    ],
)
def test_resume_answer_is_checked_against_the_human_nodes_schema(h: Harness, answer: dict[str, Any], needle: str) -> None:
    h.register("human_approval")  # approve declares input: {decision: {enum: [yes, no, revise]}, comment: ...}
    run = h("POST", "/agents/human-approval/execute", {}).body
    reply = h("POST", f"/runs/{run['run_id']}/resume", {"input": answer})
    assert reply.status == 422 and error_code(reply) == "invalid_answer", reply.body
    assert needle in reply.body["error"]["message"] and reply.body["error"]["details"][0]["field"] == "body.input"
    still = h("GET", f"/runs/{run['run_id']}")
    assert still.body["status"] == "waiting"  # a refused answer changes nothing
    ok = h("POST", f"/runs/{run['run_id']}/resume", {"input": {"decision": "no", "comment": "too high"}})
    assert ok.status == 200 and ok.body["state"]["outcome"] == "rejected: too high"


def test_routes_are_split_into_one_router_per_resource() -> None:
    """The resolver is assembled from api/routes/ routers; each module serves only its resource's paths."""
    from stepwise.api.routes import agents, health, runs, threads

    api = create_app(Stepwise.in_memory)
    paths = {
        module.__name__.rsplit(".", 1)[-1]: {rule for rule, *_ in build(api)._routes}
        for module, build in ((health, health.router), (agents, agents.router), (runs, runs.router), (threads, threads.router))
    }
    assert all(p.startswith("/agents") for p in paths["agents"]) and "/agents" in paths["agents"]
    assert all(p.startswith("/runs/") for p in paths["runs"]) and "/runs/<run_id>/cancel" in paths["runs"]
    assert all(p.startswith("/threads/") for p in paths["threads"])
    assert paths["health"] == {"/health", "/openapi.json"}
    assert {rule for rule, *_ in agents.execute_router(api)._routes} == {"/agents/<agent_id>/execute"}


def test_client_cancel_and_run_events_are_what_the_api_uses() -> None:
    """The API's cancel and events go through the client: the same calls work without the API."""
    from stepwise.graph.loader import load_text

    client = Stepwise.in_memory()
    spec = load_text('name: wait\ngraph:\n  nodes:\n    ask: {kind: human, prompt: "Go on"}\n  edges: []\n  entry: ask\n')
    result = client.run(spec, {})
    assert result.status == "waiting"
    events = client.run_events(result.run_id)
    assert events and all(e.run_id == result.run_id for e in events)
    cancelled = client.cancel(result.run_id, cause="test")
    assert cancelled.status == "cancelled" and client.get_run(result.run_id).status == "cancelled"


def test_a_body_that_is_not_json_is_named_as_the_body_with_what_to_send(h: Harness) -> None:
    """Two content types at once (JSON and YAML) reached the JSON parser, whose position was the field
    (``body.0: JSON decode error``); now the body is named, with where it broke and what to send instead. A
    body of a type the API does not take was a 500; now it is a 415 naming the types it takes."""
    yaml_text = (EXAMPLES / "sequential.yaml").read_text()
    reply = h("POST", "/agents", yaml_text, headers={"content-type": "application/json, application/yaml"})
    assert reply.status == 422 and error_code(reply) == "validation_error"
    [detail] = reply.body["error"]["details"]
    assert detail["field"] == "body" and detail["type"] == "json_invalid"
    assert "not valid JSON" in detail["message"] and "at character 0" in detail["message"]
    assert "content-type: application/json" in reply.body["error"]["message"]
    plain = h("POST", "/agents", yaml_text, headers={"content-type": "text/plain"})
    assert plain.status == 415 and error_code(plain) == "unsupported_media_type"
    assert "'text/plain'" in plain.body["error"]["message"] and "application/yaml" in plain.body["error"]["message"]
    assert h("POST", "/agents", yaml_text, headers={"content-type": "application/yaml"}).status == 201


def test_fork_and_redrive_need_no_body(h: Harness) -> None:
    """Both answered 422 `body: Field required` to a POST without a body, where cancel needs none and the docs
    say a fork defaults to the head; a fork at seq 0 (before anything) is refused by the model."""
    h.register("human_approval")
    run = h("POST", "/agents/human-approval/execute", {"input": {"amount": 3}}).body
    forked = h("POST", f"/threads/{run['thread_id']}/fork")
    assert forked.status == 201 and forked.body["at"] == h.client.head(run["thread_id"])
    assert h("POST", f"/threads/{run['thread_id']}/fork", {"at": 0}).status == 422
    refused = h("POST", f"/runs/{run['run_id']}/redrive")
    assert refused.status == 409 and error_code(refused) == "run_not_failed"  # judged on the run, not the body


FAILING = """
name: failing
graph:
  nodes:
    explode: {kind: function, fn: "stepwise.examples.nodes:fail_on_purpose"}
  entry: explode
"""


def test_a_failed_runs_error_reaches_api_clients_without_tracebacks(h: Harness) -> None:
    """Tracebacks carry server paths and engine frames: the run record keeps them for operators, and every
    way out of the API (run view, events, SSE, WebSocket, webhooks) shows the message, node and fix only."""
    assert h("POST", "/agents", {"yaml": FAILING}).status == 201
    run = h("POST", "/agents/failing/execute", {"input": {"ticket": "T-7"}}).body
    assert run["status"] == "failed"
    error = run["error"]
    assert error["node"] == "explode" and "cannot process ticket 'T-7'" in error["message"]
    assert "traceback" not in error and "Traceback" not in json.dumps(run)
    assert "stackTrace" not in json.dumps(run) and "stepwise/runtime/" not in json.dumps(run)  # no engine frames
    assert error["where"].endswith("nodes.py:90 in fail_on_purpose")  # the user's own code stays named
    assert h("GET", f"/runs/{run['run_id']}").body["error"] == error

    recorded = h.client.get_run(run["run_id"])  # the record keeps the traceback for `stepwise runs show --debug`
    assert recorded is not None and "fail_on_purpose" in recorded.error["traceback"]
    events = h("GET", f"/runs/{run['run_id']}/events").body["events"]
    failures = [e for e in events if e["type"] in ("node_failed", "run_failed")]
    assert [e["type"] for e in failures] == ["node_failed", "run_failed"]
    assert all("traceback" not in e["data"] for e in failures) and "Traceback" not in json.dumps(events)
    assert "cannot process ticket 'T-7'" in failures[0]["data"]["error"]
    logged = [e for e in h.client.run_events(run["run_id"]) if e.type in ("node_failed", "run_failed")]
    assert all("Traceback" in e.data["traceback"] for e in logged)
    for e in logged:
        assert "Traceback" not in event_frame(e).decode() and "Traceback" not in json.dumps(websocket_frame(e))


SLEEPY_FAIL = """
name: failing
graph:
  nodes:
    ok: {kind: function, fn: "stepwise.examples.nodes:draft"}
    explode: {kind: function, fn: "stepwise.examples.nodes:fail_on_purpose"}
  edges: [{from: ok, to: explode}]
  entry: ok
"""


def test_the_engine_thread_behind_a_shared_name_never_shows_in_answers(h: Harness) -> None:
    """A tenant's own thread behind a name another tenant uses is ``name~<hex>`` in the engine: errors the engine
    wrote (a busy thread), a failed run's redrive point and a fork's marker must all say the name."""
    for tenant in ("acme", "globex"):
        h.register("human_approval", tenant=tenant)
        assert h("POST", "/agents", {"yaml": SLEEPY_FAIL}, tenant=tenant).status == 201
    h("POST", "/agents/human-approval/execute", {"thread_id": "room-7"})  # acme owns the name
    other = dict(tenant="globex")
    waiting = h("POST", "/agents/human-approval/execute", {"thread_id": "room-7"}, **other).body
    busy = h("POST", "/agents/human-approval/execute", {"thread_id": "room-7", "multitask": "reject"}, **other)
    assert busy.status == 409 and error_code(busy) == "thread_busy"
    assert "thread 'room-7' is busy" in busy.body["error"]["message"] and "~" not in json.dumps(busy.body)
    fork = h("POST", "/threads/room-7/fork", {"at": 1}, **other).body
    marker = h("GET", f"/threads/{fork['thread_id']}/events", **other).body["events"][0]
    assert marker["type"] == "forked" and marker["data"]["from"] == "room-7"
    h("POST", f"/runs/{waiting['run_id']}/cancel", **other)
    failed = h("POST", "/agents/failing/execute", {"thread_id": "room-7"}, **other).body
    assert failed["status"] == "failed" and failed["error"]["redrive"] == {"start_at": "explode"}
    for path in (f"/runs/{failed['run_id']}", f"/runs/{failed['run_id']}/events", "/threads/room-7/events", "/runs"):
        assert "~" not in json.dumps(h("GET", path, **other).body), path
