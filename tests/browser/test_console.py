"""The web console in a real browser: Debian's Chromium driven by Playwright, against a live ``serve``.

The story of docs/console.md, step by step, asserting on the DOM: sign in with an API key, run the
human-approval example from the page, watch its nodes light up from the SSE stream, approve from the
form generated from the node's ``input:`` schema, open the timeline, see the state and diff at a seq,
fork there and run the agent on the fork; the runs list filters; the agents page plots; phone width.

Screenshots go to ``.artifacts/console/`` (not committed); with ``STEPWISE_DOCS_IMG=1`` the main
pages are also copied to docs/img/console-*.png. Chromium comes from ``make browser`` (Makefile).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts" / "console"
EXAMPLE = ROOT / "statemachines" / "examples" / "human_approval.yaml"


def chromium_path() -> str | None:
    for candidate in (os.environ.get("STEPWISE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


CHROMIUM = chromium_path()
try:
    import playwright.sync_api  # noqa: F401

    PLAYWRIGHT = True
except ImportError:  # pragma: no cover - dev installs it
    PLAYWRIGHT = False

pytestmark = [
    pytest.mark.skipif(not PLAYWRIGHT, reason="playwright is not installed: pip install -e '.[dev]'"),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium on this machine and it could not be installed: run `make browser` (apt-get install chromium) "
        "or set STEPWISE_CHROMIUM to a Chromium binary",
    ),
]


class Live:
    def __init__(self, url: str, key: str, server: Any = None) -> None:
        self.url, self.key, self.server = url, key, server

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"authorization": f"Bearer {self.key}", "content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as res:
            return json.loads(res.read() or b"null")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    from stepwise.api.keys import create_key
    from stepwise.api.server import make_server

    server = make_server("127.0.0.1", 0, tmp_path / "home").start()
    try:
        _, key = create_key(server.api.store, "default", "browser test")
        live = Live(server.url, key, server)
        live.call("POST", "/agents", {"yaml": EXAMPLE.read_text()})
        yield live
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.set_default_timeout(20_000)
        try:
            yield pg
        finally:
            browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page: Any, name: str, docs: bool = False) -> None:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if docs and os.environ.get("STEPWISE_DOCS_IMG") == "1":
        shutil.copyfile(path, ROOT / "docs" / "img" / f"console-{name}.png")


UNLABELLED = """[...document.querySelectorAll('input, select, textarea, button')].filter((e) =>
    !((e.labels && e.labels.length) || e.getAttribute('aria-label') || (e.type !== 'radio' && e.textContent.trim()))
    && !(e.type === 'radio' && e.closest('label'))).map((e) => e.outerHTML)"""


def sign_in(page: Any, live: Live) -> None:
    page.goto(live.url + "/")
    page.wait_for_selector("#key")
    assert page.evaluate("document.activeElement.id") == "key"  # keyboard users land in the field
    page.fill("#key", live.key)
    page.keyboard.press("Enter")
    page.wait_for_selector("h1:text('Runs')")


def test_the_form_appears_when_the_waiting_write_lands_after_the_interrupt_event(live: Live, page: Any) -> None:
    """The interrupt event is logged before the run's record says ``waiting`` (crash-safe order), so the
    page's read right after the event can see ``running``: it must read again until the form can show.

    The run's ``waiting`` write is held until the API has answered a read of the run while it still
    said ``running`` (the race CI once lost), then let through."""
    api = live.server.api
    runs = api.client.services.runs
    served_running, write_update, view = threading.Event(), runs.update, api.run_view

    def held_update(run_id: str, **kw: Any) -> Any:
        if kw.get("status") == "waiting":
            assert served_running.wait(30), "the console never read the run between the interrupt and the waiting write"
        return write_update(run_id, **kw)

    def watched_view(run: Any, **kw: Any) -> Any:
        out = view(run, **kw)
        if run.status == "running" and api.client.run_events(run.run_id)[-1].type == "interrupt":
            served_running.set()
        return out

    runs.update, api.run_view = held_update, watched_view
    sign_in(page, live)
    page.select_option("#run-agent", "human-approval")
    page.fill("#run-input", '{"amount": 5}')
    page.click("#run-start")
    page.wait_for_selector('g.node[data-node="approve"].st-waiting')
    assert page.locator("#human-form legend").first.inner_text() == "decision"
    assert served_running.is_set()
    page.goto("about:blank")


def test_run_watch_approve_timeline_fork(live: Live, page: Any) -> None:
    sign_in(page, live)
    page.select_option("#run-agent", "human-approval")
    page.fill("#run-input", '{"amount": 12}')
    page.click("#run-start")

    # the run page: nodes light up from the stream, the human node waits with a form from its schema
    page.wait_for_selector('g.node[data-node="draft"].st-done')
    page.wait_for_selector('g.node[data-node="approve"].st-waiting')
    run_id = page.url.rsplit("/", 1)[-1]
    assert page.get_attribute('g.node[data-node="publish"]', "class").endswith("st-idle")
    assert page.locator("#human-form legend").first.inner_text() == "decision"
    assert [page.get_attribute(f"#ans-decision-{i}", "value") for i in range(3)] == ['"yes"', '"no"', '"revise"']
    assert "if state.decision == 'yes'" in page.text_content("svg.graph")  # edge conditions from the spec
    assert page.locator('#nodes tr[data-node="draft"] .badge').inner_text() == "done"
    assert page.evaluate(UNLABELLED) == []  # every control has a label a screen reader can read
    shot(page, "run-waiting", docs=True)

    # approve from the form (keyboard: the radio is focusable and checked with Space)
    page.focus("#ans-decision-0")
    page.keyboard.press("Space")
    page.click("#resume")
    page.wait_for_selector('g.node[data-node="publish"].st-done')
    page.wait_for_selector('#run-head .badge[data-status="succeeded"]')
    assert page.locator("#human-form").count() == 0
    assert live.call("GET", f"/runs/{run_id}")["state"]["decision"] == "yes"
    page.wait_for_selector("#timeline button:has-text('run_finished')")  # the stream delivers the log's last event too
    shot(page, "run-done", docs=True)

    # time travel: the state at seq 2 and its diff against seq 1
    page.click('#timeline button[data-seq="2"]')
    page.wait_for_selector("#at-h:text('State at seq 2')")
    assert "+ draft:" in page.inner_text("#state-diff")
    assert '"update"' in (page.text_content("#event-json") or "")
    page.click('#timeline button[data-seq="3"]')  # the interrupt: its prompt, never its task token
    page.wait_for_selector("#at-h:text('State at seq 3')")
    assert "Approve this refund" in page.inner_text("#event-json") and "token" not in (page.text_content("#event-json") or "")
    page.click('#timeline button[data-seq="2"]')
    page.wait_for_selector("#at-h:text('State at seq 2')")
    assert page.get_attribute('#timeline button[data-seq="2"]', "aria-pressed") == "true"
    shot(page, "timeline", docs=True)

    # fork at seq 2, then run the agent on the fork: it reaches the human node again
    page.click("#fork")
    page.wait_for_selector("#forked")
    forked = page.inner_text("#forked code")
    assert live.call("GET", f"/threads/{forked}/state")["state"]["draft"].startswith("Refund of 12 EUR")
    page.click("#fork-run")
    page.wait_for_url(lambda url: not url.endswith(run_id))  # (no wait_for_function: the CSP forbids its eval)
    page.wait_for_selector('g.node[data-node="approve"].st-waiting')
    assert forked in page.inner_text("#run-head")
    # the fork's thread timeline: its `forked` marker (from the original thread, at seq 2) then this run's events
    page.wait_for_selector("#thread-note:has-text('Forked from thread')")
    assert "at seq 2" in page.inner_text("#thread-note") and "forked" in page.inner_text('#timeline button[data-seq="1"]')

    # the runs list, filtered
    page.goto(live.url + "/#/")
    page.wait_for_selector("#runs tbody tr")
    assert page.locator("#runs tbody tr").count() == 2
    page.select_option("#f-status", "waiting")
    page.wait_for_url(lambda url: "status=waiting" in url)
    page.wait_for_selector("#count:text('1 run')")
    assert page.locator("#runs tbody tr .badge").all_inner_texts() == ["waiting"]
    page.select_option("#f-status", "")
    page.wait_for_selector("#count:text('2 runs')")
    page.fill("#f-min_cost", "0.01")  # server-side filters: nothing here spent a cent (scripted example)
    page.click("#f-apply")
    page.wait_for_url(lambda url: "min_cost=0.01" in url)
    page.wait_for_selector("#count:text('0 runs')")
    page.fill("#f-min_cost", "")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    page.fill("#f-since", today)
    page.fill("#f-until", today)
    page.click("#f-apply")
    page.wait_for_url(lambda url: f"until={today}" in url)
    page.wait_for_selector("#count:text('2 runs')")
    page.goto(live.url + "/#/?limit=1")  # pages: the newest run, then "Older runs"
    page.wait_for_selector("#count:text('1 run on this page')")
    newest = page.inner_text("#runs tbody tr a")
    page.click("#older")
    page.wait_for_selector("#newest")
    assert page.inner_text("#runs tbody tr a") != newest and page.locator("#older").count() == 0
    page.goto(live.url + "/#/")
    page.wait_for_selector("#count:text('2 runs')")
    assert page.evaluate(UNLABELLED) == []
    shot(page, "runs", docs=True)
    page.focus("#f-apply")  # keyboard: Tab from the filters reaches the first run, Enter opens it
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('#runs') !== null")
    first = page.evaluate("document.activeElement.textContent")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"h1:text('Run {first}')")
    page.go_back()
    page.wait_for_selector("#runs tbody tr")

    # agents: runs per day, p50/p95, spend
    page.click("a[data-nav='stats']")
    card = page.wait_for_selector('section[data-agent="human-approval"]')
    assert "2 runs" in card.inner_text()
    assert page.locator('section[data-agent="human-approval"] svg.plot').count() == 3  # runs/day, spend/day, p50/p95
    assert page.locator('section[data-agent="human-approval"] svg[aria-label="Spend per day of human-approval in US dollars"]').count() == 1
    shot(page, "agents", docs=True)
    page.click('section[data-agent="human-approval"] h2 a')  # an agent's graph without a run
    page.wait_for_selector("h1:text('Agent human-approval')")
    assert page.locator("svg.graph g.node").count() == 5 and page.input_value("#pick-version") == "1"

    # phone width: nothing wider than the screen but the scrollable graph and tables
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live.url + f"/#/runs/{run_id}")
    page.wait_for_selector('g.node[data-node="publish"].st-done')
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "run-phone", docs=True)


REACT = (
    (EXAMPLE.parent / "react.yaml").read_text().replace("graph:\n", "guardrails:\n  input: [{check: pii, action: redact}]\ngraph:\n", 1)
)  # the react example with a guardrail that redacts e-mail addresses before the model sees them


def test_transcript_shows_messages_tool_calls_and_guardrail_decisions(live: Live, page: Any) -> None:
    live.call("POST", "/agents", {"yaml": REACT})
    question = "What is 17 * 23? Reply to ann@example.com"
    run = live.call("POST", "/agents/react/execute", {"input": {"messages": [{"role": "user", "content": question}]}})
    assert run["status"] == "succeeded", run
    sign_in(page, live)
    page.goto(live.url + f"/#/runs/{run['run_id']}")
    page.wait_for_selector("#transcript-list li.msg")
    assert page.inner_text("#transcript-list li.msg.user").endswith(question)  # the run's input message
    first_reply = page.locator("#transcript-list li.msg.assistant").first.inner_text()
    assert "reason (LLM)" in first_reply and 'calls calculator({"expression":"17 * 23"})' in first_reply and "tokens" in first_reply
    tool = page.locator("#transcript-list li.msg.tool").first.inner_text()  # ran, or failed with its error: shown either way
    assert "tool calculator" in tool and '"expression":"17 * 23"' in tool
    guard = page.locator("#transcript-list li.msg.guard").first.inner_text()
    assert "guardrail input.pii" in guard and "redact" in guard and "email" in guard
    replies = page.locator("#transcript-list li.msg.assistant").all_inner_texts()
    assert any("17 × 23 = 391" in r for r in replies) and any("approve" in r for r in replies)
    seqs = [int(x) for x in page.eval_on_selector_all("#transcript-list li[data-seq]", "els => els.map((e) => e.dataset.seq)")]
    assert seqs == sorted(seqs)  # log order
    shot(page, "transcript", docs=True)
    page.select_option("#transcript-node", "reflect")  # one node's transcript
    page.wait_for_selector("#transcript-list[aria-label='Transcript of reflect']")
    nodes = page.eval_on_selector_all("#transcript-list li.msg", "els => els.map((e) => e.dataset.node)")
    assert nodes and set(nodes) == {"reflect"}
    assert page.locator("#transcript-list li.msg.assistant").last.inner_text().find("approve") >= 0
    assert page.evaluate(UNLABELLED) == []


class Jwks:
    """The issuer's JWKS on a loopback port (what Cognito serves at /.well-known/jwks.json)."""

    def __init__(self, public: dict[str, Any]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        body = json.dumps({"keys": [public]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_jwt_sign_in(tmp_path: Path, page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sign in with a JWT signed by an OIDC issuer whose JWKS is served on loopback: the console sends
    it as a bearer token like an API key, and the tenant comes from its claim."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from stepwise.api.server import make_server

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key())), "kid": "k1", "use": "sig"}
    jwks = Jwks(public)
    issuer = "https://issuer.test/pool"
    for name, value in {"ISSUER": issuer, "AUDIENCE": "console-app", "JWKS_URL": jwks.url}.items():
        monkeypatch.setenv(f"STEPWISE_JWT_{name}", value)
    now = int(time.time())
    claims = {"iss": issuer, "aud": "console-app", "sub": "ann", "tenant": "acme", "iat": now, "exp": now + 3600}
    token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"})
    server = make_server("127.0.0.1", 0, tmp_path / "home").start()
    try:
        Live(server.url, token).call("POST", "/agents", {"yaml": EXAMPLE.read_text()})  # registered for tenant acme
        forged = jwt.encode(
            {**claims, "tenant": "other"},
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            algorithm="RS256",
            headers={"kid": "k1"},
        )
        page.goto(server.url + "/")
        page.fill("#key", forged)
        page.click("button[type=submit]")
        page.wait_for_selector("[role=alert]")
        assert "refused" in page.inner_text("[role=alert]")  # a token signed by another key

        page.fill("#key", token)
        page.keyboard.press("Enter")
        page.wait_for_selector("h1:text('Runs')")
        page.select_option("#run-agent", "human-approval")
        page.fill("#run-input", '{"amount": 7}')
        page.click("#run-start")
        page.wait_for_selector('g.node[data-node="approve"].st-waiting')
        run_id = page.url.rsplit("/", 1)[-1]
        record = server.api.client.get_run(run_id)
        assert record is not None and record.tenant == "acme"  # the tenant claim, not a key's tenant
        page.check("#ans-decision-0")
        page.click("#resume")
        page.wait_for_selector('#run-head .badge[data-status="succeeded"]')
    finally:
        page.goto("about:blank")  # leave the console first: its stream's fetch fails if the server goes first
        server.shutdown()
        server.server_close()
        jwks.server.shutdown()
        jwks.server.server_close()


class StagePrefix:
    """What API Gateway puts in front of the API: every URL under ``/<stage>/`` (anything else is
    403 Missing Authentication Token), and whole responses only (no streaming). Forwards to ``upstream``
    with the prefix removed, headers and body as they are."""

    def __init__(self, upstream: str, stage: str = "dev") -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        prefix = f"/{stage}"
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if not (self.path == prefix or self.path.startswith(prefix + "/")):
                    return self._send(403, {"content-type": "application/json"}, b'{"message":"Missing Authentication Token"}')
                target = self.path[len(prefix) :] or "/"
                outer.paths.append(target)
                body = self.rfile.read(int(self.headers.get("content-length") or 0)) or None
                keep = ("authorization", "content-type", "last-event-id", "x-api-key")
                req = urllib.request.Request(
                    upstream + target, data=body, method=self.command, headers={k: v for k, v in self.headers.items() if k.lower() in keep}
                )
                try:
                    with urllib.request.urlopen(req, timeout=60) as res:
                        return self._send(res.status, dict(res.headers.items()), res.read())
                except urllib.error.HTTPError as exc:
                    return self._send(exc.code, dict(exc.headers.items()), exc.read())

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = _forward

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{prefix}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_behind_a_stage_prefix_with_a_backlog_only_stream(tmp_path: Path, page: Any) -> None:
    """The console as deployed behind API Gateway: served under ``/<stage>/`` (so every asset and API
    call must be relative to that root), and the stream answers the events so far and closes (no
    response streaming), so the page reconnects with ?after=<last seq> and still lights up. Here the
    server's live SSE is switched off, so the stream route is the Lambda handler's, as deployed."""
    from stepwise.api.keys import create_key
    from stepwise.api.server import make_server

    server = make_server("127.0.0.1", 0, tmp_path / "home").start()
    server.app.streams = None  # GET /runs/{id}/stream now goes through the Lambda handler: backlog only
    gateway = StagePrefix(server.url)
    seen: list[dict[str, Any]] = []
    handler_call = server.app.call

    async def recording(event: dict[str, Any]) -> dict[str, Any] | None:
        if event["path"].endswith("/stream"):
            seen.append(dict(event.get("queryStringParameters") or {}))
        return await handler_call(event)

    server.app.call = recording  # type: ignore[method-assign]
    try:
        _, key = create_key(server.api.store, "default", "browser test")
        live = Live(gateway.url, key)  # every call goes through the stage prefix
        live.call("POST", "/agents", {"yaml": EXAMPLE.read_text()})
        run = live.call("POST", "/agents/human-approval/execute", {"input": {"amount": 4}})
        assert run["status"] == "waiting"
        sign_in(page, live)
        page.goto(live.url + f"/#/runs/{run['run_id']}")
        page.wait_for_selector('g.node[data-node="approve"].st-waiting')
        page.wait_for_selector("#human-form")
        polls = len(seen)
        live.call("POST", f"/runs/{run['run_id']}/resume", {"input": {"decision": "yes"}})  # answered elsewhere
        page.wait_for_selector('g.node[data-node="publish"].st-done')  # picked up by a later reconnect
        page.wait_for_selector('#run-head .badge[data-status="succeeded"]')
        page.wait_for_selector("#timeline button:has-text('run_finished')")
        assert len(seen) > polls and all(q.get("after", "").isdigit() for q in seen)  # every request resumed after a seq
        afters = [int(q["after"]) for q in seen]
        assert afters == sorted(afters) and afters[-1] >= 3  # moving forward through the log, never from the start
        assert page.locator("#timeline button[data-seq='3']").count() == 1  # no event drawn twice
        assert "/console/app.js" in gateway.paths and "/runs?limit=1" in gateway.paths  # all of it under /dev/
    finally:
        gateway.close()
        server.shutdown()
        server.server_close()


def test_a_run_parked_on_a_rate_limit_continues_from_the_page(tmp_path: Path, page: Any) -> None:
    """A run parked on an LLM 429 (waiting without an interrupt) shows why and when it continues, and
    **Continue now** resumes it. The park itself is written into the run record here (a double: making
    a real 429 park needs a provider that keeps refusing past the router's retries); what the page and
    the API do with it is real: the resume continues the parked run, which replays to its human node."""
    from stepwise.api.keys import create_key
    from stepwise.api.server import make_server

    server = make_server("127.0.0.1", 0, tmp_path / "home").start()
    try:
        _, key = create_key(server.api.store, "default", "browser test")
        live = Live(server.url, key, server)
        live.call("POST", "/agents", {"yaml": EXAMPLE.read_text()})
        run = live.call("POST", "/agents/human-approval/execute", {"input": {"amount": 9}})
        prompt = "rate-limited (Stepwise.RateLimited); continues after 60 s"
        parked = {
            "kind": "retry",
            "node": "draft",
            "error": "Stepwise.RateLimited",
            "retry_at": time.time() + 60,
            "parks": 1,
            "prompt": prompt,
        }
        server.api.client.services.runs.update(run["run_id"], status="waiting", waiting=parked, interrupt_id=None)
        sign_in(page, live)
        page.goto(live.url + f"/#/runs/{run['run_id']}")
        page.wait_for_selector("#parked")
        assert page.inner_text("#parked-h") == "Parked at draft" and prompt in page.inner_text("#parked")
        assert page.locator("#human-form").count() == 0  # nobody is asked for an answer
        page.click("#continue-now")
        page.wait_for_selector("#human-form")  # continued now: replayed to the human node, which asks again
        assert live.call("GET", f"/runs/{run['run_id']}")["waiting"]["interrupt_id"]
        assert page.locator("#parked").count() == 0
    finally:
        server.shutdown()
        server.server_close()


def test_refused_key_and_bad_answer(live: Live, page: Any) -> None:
    page.goto(live.url + "/")
    page.fill("#key", "swk_default_nope_nope")
    page.click("button[type=submit]")
    page.wait_for_selector("[role=alert]")
    assert "refused" in page.inner_text("[role=alert]")

    run = live.call("POST", "/agents/human-approval/execute", {"input": {"amount": 3}})
    assert run["status"] == "waiting"
    sign_in(page, live)
    page.goto(live.url + f"/#/runs/{run['run_id']}")
    page.wait_for_selector("#human-form")
    page.click("#resume")  # no decision chosen: the browser's own required check stops it
    assert page.evaluate("document.querySelector('#ans-decision-0').validity.valueMissing") is True
    assert live.call("GET", f"/runs/{run['run_id']}")["status"] == "waiting"


def test_static_files_are_confined(live: Live) -> None:
    for path in ("/console/../api/app.py", "/console/app.py", "/console/%2e%2e/console.py"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(live.url + path, timeout=10)
        assert caught.value.code == 404
    with urllib.request.urlopen(live.url + "/", timeout=10) as res:
        assert "default-src 'self'" in res.headers["content-security-policy"]
        assert b'<script type="module" src="console/app.js">' in res.read()  # relative: works under a stage prefix


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLE.parent.glob("*.yaml")))
def test_every_example_graph_is_drawn_from_its_asl(live: Live, page: Any, example: str) -> None:
    """Every node of every example appears as a box drawn from the compiled ASL (parallel, loops, subgraphs)."""
    from stepwise.asl.compiler import compile_graph
    from stepwise.graph.loader import load_file

    spec = load_file(EXAMPLE.parent / example)
    asl = compile_graph(spec)
    page.goto(live.url + "/#/none")  # any page of the console: serves the modules
    drawn = page.evaluate(
        """async ([asl, spec]) => {
            const { draw } = await import('/console/graph.js');
            const svg = draw(asl, spec);
            document.body.append(svg);
            return { nodes: [...svg.querySelectorAll('g.node')].map((g) => g.dataset.node),
                     edges: svg.querySelectorAll('path.edge').length, width: svg.getBBox().width };
        }""",
        [asl, spec.canonical()],
    )
    missing = set(spec.graph.nodes) - set(drawn["nodes"])
    assert not missing, f"{example}: nodes not drawn: {missing}"
    assert drawn["edges"] >= len(spec.graph.nodes) - 1 and drawn["width"] > 0
