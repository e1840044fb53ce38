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
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"x-api-key": self.key, "content-type": "application/json"}
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
        live = Live(server.url, key)
        live.call("POST", "/agents", {"yaml": EXAMPLE.read_text()})
        yield live
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def page(live: Live) -> Iterator[Any]:
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

    # the runs list, filtered
    page.goto(live.url + "/#/")
    page.wait_for_selector("#runs tbody tr")
    assert page.locator("#runs tbody tr").count() == 2
    page.select_option("#f-status", "waiting")
    page.wait_for_url(lambda url: "status=waiting" in url)
    page.wait_for_selector("#count:text('1 of 1 runs')")
    assert page.locator("#runs tbody tr .badge").all_inner_texts() == ["waiting"]
    page.select_option("#f-status", "")
    page.wait_for_selector("#count:text('2 of 2 runs')")
    assert page.evaluate(UNLABELLED) == []
    shot(page, "runs", docs=True)
    page.focus("#f-agent")  # keyboard: Tab from the filters reaches the first run, Enter opens it
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
    assert page.locator('section[data-agent="human-approval"] svg.plot').count() == 2
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
        assert b'<script type="module" src="/console/app.js">' in res.read()


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLE.parent.glob("*.yaml")))
def test_every_example_graph_is_drawn_from_its_asl(live: Live, page: Any, example: str) -> None:
    """Every node of every example appears as a box drawn from the compiled ASL (parallel, loops, subgraphs)."""
    from stepwise.asl.compiler import compile_graph
    from stepwise.graph.loader import load_file

    spec = load_file(EXAMPLE.parent / example)
    asl = compile_graph(spec)
    page.goto(live.url + "/console/index.html#/none")  # any page of the console: serves the modules
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
