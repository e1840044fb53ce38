"""Fresh virtualenvs for the base install and each extra, each running what that extra is for.

The wheel is built once per session (tests/install/conftest.py) and every venv installs it with one
extra — nothing from the dev venv is visible (a plain ``python -m venv``, no system site-packages).
pip's cache keeps repeat sessions short. Each install runs in its own test, so ``pytest -n auto``
spreads them over the cores.

- base: every function-only example, copied out of the package with ``stepwise examples copy`` and run
  from an empty directory; ``stepwise serve`` and one API request that runs a graph; the console's page
  and an event trigger (``POST /events``) through that server; an LLM example and the remote commands
  (``--url``) refused in one line naming the extra; the installed metadata agrees with the layer's list.
- remote: ``stepwise.remote.Client`` against that venv's ``stepwise serve`` (register, run, stream, resume,
  list), and ``stepwise runs --url``; no LLM SDK, numpy or MCP came with it.
- llm: the demo (``make demo``'s multi-agent flow); the remote CLI (``stepwise run/resume/runs`` with
  ``STEPWISE_URL``) against that venv's ``stepwise serve``.
- memory: ``stepwise memory list`` on a fresh home (the memory store opens).
- aws: the AWS adapters against a moto server (the LocalStack check's script).
- infra: ``cdk synth`` with that venv's ``python3`` first on PATH.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from layers.build import layer_requirements
from tests.support.builds import ROOT

pytestmark = pytest.mark.slow

FUNCTION_ONLY = ["sequential", "conditional", "parallel", "subgraph", "human_approval"]


def venv(path: Path, wheel: Path, extra: str | None) -> Path:
    """A fresh venv with the wheel (and ``extra``) installed; returns its bin directory."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    spec = f"{wheel}[{extra}]" if extra else str(wheel)
    proc = subprocess.run(
        [str(path / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check", spec],
        capture_output=True,
        text=True,
        timeout=1800,
        env=clean_env(),  # no PYTHONPATH: a checkout on it would make pip think stepwise is already installed
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (path / "bin" / "stepwise").exists(), proc.stdout[-2000:]
    return path / "bin"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "STEPWISE_", "AWS_"))}
    return env | extra


def run(bin_dir: Path, *args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-2000:]
    return proc


@pytest.fixture(scope="module")
def base_bin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return venv(tmp_path_factory.mktemp("venv-base"), wheel, None)


def test_base_runs_every_function_only_example_copied_out_of_the_package(base_bin: Path, tmp_path: Path) -> None:
    listed = run(base_bin, "stepwise", "examples", cwd=tmp_path).stdout
    for name in FUNCTION_ONLY:
        assert name in listed
        run(base_bin, "stepwise", "examples", "copy", name, "--to", str(tmp_path), "--force", cwd=tmp_path)
        out = run(base_bin, "stepwise", "run", f"{name}.yaml", "--output", "json", "--home", str(tmp_path / "home"), cwd=tmp_path)
        assert json.loads(out.stdout)["status"] in ("succeeded", "waiting"), out.stdout


def test_base_refuses_an_llm_graph_in_one_line(base_bin: Path, tmp_path: Path) -> None:
    run(base_bin, "stepwise", "examples", "copy", "multi_agent", "--to", str(tmp_path), cwd=tmp_path)
    proc = run(base_bin, "stepwise", "run", "multi_agent.yaml", "--home", str(tmp_path / "home"), cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: using agent, planner and synthesizer nodes requires the 'llm' extra"
        " (module 'numpy' is not installed): pip install 'stepwise[llm]'"
    ]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=\[;! ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_base_metadata_is_what_the_layer_reads(base_bin: Path, tmp_path: Path) -> None:
    """The installed wheel's metadata (importlib.metadata) and layers/build.py's reading of pyproject.toml agree."""
    code = "import json, importlib.metadata as m; print(json.dumps(m.requires('stepwise')))"
    requires: list[str] = json.loads(run(base_bin, "python", "-c", code, cwd=tmp_path).stdout)
    base = [r for r in requires if "extra ==" not in r]
    by_extra = {e: [r for r in requires if f'extra == "{e}"' in r] for e in ("aws", "llm", "lambda")}
    own = _names(by_extra["lambda"]) - {"stepwise"}  # `stepwise[aws,llm]` is named, not expanded, in the metadata
    assert "stepwise" in _names(by_extra["lambda"])
    expanded = _names(base) | _names(by_extra["aws"]) | _names(by_extra["llm"]) | own
    assert _names(layer_requirements(extra="lambda")) == expanded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(bin_dir: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``stepwise serve`` of that venv on a free loopback port, with a fresh home and key; stopped on exit."""
    home = tmp_path / "home"
    created = run(bin_dir, "python", "-m", "stepwise.api.keys", "create", "--tenant", "default", "--home", str(home), cwd=tmp_path)
    key = json.loads(created.stdout.strip().splitlines()[0])["api_key"]
    port = free_port()
    proc = subprocess.Popen(
        [str(bin_dir / "stepwise"), "serve", "--port", str(port), "--home", str(home)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # serve prints its URL once it listens
            if "listening on" in line:
                break
        else:
            pytest.fail(f"stepwise serve exited with {proc.wait()}")
        yield f"http://127.0.0.1:{port}", key
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def served(base_bin: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    with serving(base_bin, tmp_path) as target:
        yield target


def request(url: str, method: str = "GET", body: Any = None, key: str | None = None) -> tuple[int, Any]:
    headers = {"content-type": "application/json", **({"x-api-key": key} if key else {})}
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers), timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_base_serves_the_api_and_runs_a_graph(served: tuple[str, str]) -> None:
    url, key = served
    assert request(f"{url}/health")[0] == 200
    graph = (ROOT / "statemachines" / "examples" / "sequential.yaml").read_text()
    assert request(f"{url}/agents", "POST", {"yaml": graph}, key)[0] == 201
    status, run_view = request(f"{url}/agents/sequential/execute", "POST", {"input": {}, "wait_seconds": 30}, key)
    assert status == 200 and run_view["status"] == "succeeded", run_view
    assert run_view["state"]["log"] == ["fetch", "clean", "summarize"]


TRIGGERED = """
name: triggered
state: {trail: append}
triggers:
  - name: refunds
    event: {source: [helpdesk], detail-type: [ticket.created]}
    into: ticket
graph:
  nodes:
    evaluate: {kind: function, fn: "stepwise.examples.nodes:evaluate"}
  entry: evaluate
"""


def test_base_serves_the_console_and_starts_runs_from_events(served: tuple[str, str]) -> None:
    """The console's files ship in the wheel; an event trigger starts one run per event id (POST /events)."""
    url, key = served
    with urllib.request.urlopen(f"{url}/", timeout=60) as page:
        assert page.status == 200 and "<title>Stepwise console</title>" in page.read().decode()
    with urllib.request.urlopen(f"{url}/console/app.js", timeout=60) as script:
        assert script.status == 200 and script.read()
    assert request(f"{url}/agents", "POST", {"yaml": TRIGGERED}, key)[0] == 201
    entry = {"id": "evt-1", "source": "helpdesk", "detail_type": "ticket.created", "detail": {"text": "refund please"}}
    status, fired = request(f"{url}/events", "POST", {"entries": [entry]}, key)
    assert status == 200, fired
    (started,) = fired["results"][0]["runs"]
    assert started["trigger"] == "refunds" and started["duplicate"] is False
    again = request(f"{url}/events", "POST", {"entries": [entry]}, key)[1]["results"][0]["runs"]
    assert [(r["run_id"], r["duplicate"]) for r in again] == [(started["run_id"], True)]
    stream = urllib.request.Request(f"{url}/runs/{started['run_id']}/stream", headers={"x-api-key": key})
    with urllib.request.urlopen(stream, timeout=120) as events:  # the stream ends with the run
        assert b"event: end" in events.read()
    status, view = request(f"{url}/runs/{started['run_id']}", key=key)
    assert status == 200 and view["status"] == "succeeded", view
    assert view["state"]["type"] == "A" and view["state"]["trail"] == ["evaluate"]


def test_base_remote_commands_name_the_extra_they_need(base_bin: Path, tmp_path: Path) -> None:
    proc = run(base_bin, "stepwise", "runs", "--url", "http://127.0.0.1:9", "--api-key", "swk_x", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: using commands with --url (the remote client) requires the 'remote' extra (module 'httpx' is not installed): "
        "pip install 'stepwise[remote]'"
    ]


REMOTE_CLIENT = """
import json, sys
from importlib.util import find_spec
from stepwise.remote import Client

url, key, graph = sys.argv[1:4]
seen = []
with Client(url, api_key=key) as sw:
    sw.register(yaml=open(graph).read())
    run = sw.execute("human-approval", {"amount": 40}, background=True)
    for event in sw.stream(run.run_id):  # SSE over httpx; the stream ends with the run
        seen.append(event.event)
        if event.event == "interrupt":
            sw.resume(run.run_id, {"decision": "yes"})
    done = sw.run(run.run_id)
    listed = [r.run_id for r in sw.runs(limit=5).runs]
print(json.dumps({
    "status": done.status, "published": done.state.get("published"), "seen": sorted(set(seen) & {"interrupt", "end"}),
    "listed": listed == [run.run_id], "absent": [m for m in ("numpy", "openai", "anthropic", "mcp", "boto3") if find_spec(m) is None],
}))
"""


def test_remote_extra_drives_a_local_serve_with_the_python_client(wheel: Path, tmp_path: Path) -> None:
    """`pip install 'stepwise[remote]'` alone: the Python client and the `--url` commands against `stepwise serve`."""
    bin_dir = venv(tmp_path / "venv", wheel, "remote")
    graph = str(ROOT / "statemachines" / "examples" / "human_approval.yaml")
    (tmp_path / "api").mkdir()
    with serving(bin_dir, tmp_path / "api") as (url, key):
        out = run(bin_dir, "python", "-c", REMOTE_CLIENT, url, key, graph, cwd=tmp_path)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result == {
            "status": "succeeded", "published": True, "seen": ["end", "interrupt"], "listed": True,
            "absent": ["numpy", "openai", "anthropic", "mcp", "boto3"],
        }, out.stdout  # fmt: skip
        listed = json.loads(run(bin_dir, "stepwise", "runs", "--url", url, "--api-key", key, "--limit", "5", cwd=tmp_path).stdout)
        assert [r["status"] for r in listed["runs"]] == ["succeeded"]


def test_llm_extra_runs_the_demo(wheel: Path, tmp_path: Path) -> None:
    bin_dir = venv(tmp_path / "venv", wheel, "llm")
    question = json.dumps({"question": "How should our payment client retry failed calls?"})
    out = run(
        bin_dir, "stepwise", "run", str(ROOT / "statemachines" / "examples" / "multi_agent.yaml"), "--input", question,
        "--output", "json", "--home", str(tmp_path / "home"), cwd=tmp_path,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert result["status"] == "succeeded" and result["state"]["quality"] >= 0.8
    # the remote CLI (httpx comes with this extra) against this venv's own `stepwise serve`
    (tmp_path / "api").mkdir()
    with serving(bin_dir, tmp_path / "api") as (url, key):  # its own home: the demo's run is not on the API
        env = clean_env(STEPWISE_URL=url, STEPWISE_API_KEY=key)
        graph = str(ROOT / "statemachines" / "examples" / "human_approval.yaml")
        started = json.loads(run(bin_dir, "stepwise", "run", graph, "--input", '{"amount": 40}', cwd=tmp_path, env=env).stdout)
        assert started["status"] == "waiting" and started["waiting"]["node"] == "approve", started
        resumed = run(bin_dir, "stepwise", "resume", started["run_id"], "--input", '{"decision": "yes"}', cwd=tmp_path, env=env)
        assert json.loads(resumed.stdout)["status"] == "succeeded"
        listed = json.loads(run(bin_dir, "stepwise", "runs", "--limit", "5", cwd=tmp_path, env=env).stdout)
        assert [r["run_id"] for r in listed["runs"]] == [started["run_id"]]


def test_memory_extra_opens_the_memory_store(wheel: Path, tmp_path: Path) -> None:
    bin_dir = venv(tmp_path / "venv", wheel, "memory")
    run(bin_dir, "stepwise", "memory", "list", "--tenant", "default", "--home", str(tmp_path / "home"), cwd=tmp_path)


def test_aws_extra_reaches_aws_through_its_adapters(wheel: Path, tmp_path: Path) -> None:
    from moto.server import ThreadedMotoServer
    from tests.install.test_localstack import CHECK

    bin_dir = venv(tmp_path / "venv", wheel, "aws")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = clean_env(
            AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test", EXPECTED_ENDPOINT=f"http://{host}:{port}",
        )  # fmt: skip
        out = run(bin_dir, "python", "-c", CHECK, cwd=tmp_path, env=env)
        assert json.loads(out.stdout.strip().splitlines()[-1])["secret"] == "sk-from-edge"
    finally:
        urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=30).close()
        server.stop()


def test_infra_extra_synthesizes_with_its_own_python3(wheel: Path, tmp_path: Path) -> None:
    from tests.infra.test_cdk_app import shim, synth

    bin_dir = venv(tmp_path / "venv", wheel, "infra")
    proc = synth(shim(tmp_path / "bin", str(bin_dir / "python"), tmp_path / "called"), tmp_path / "cdk.out")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "called").read_text().split() == ["infra/app.py"]
    assert list((tmp_path / "cdk.out").glob("*.template.json"))
