# The two commands of the README:  `make demo`  and  `make test`.  Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck bench bench-full synth clean

$(STAMP): pyproject.toml $(wildcard package.json)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@if [ -f package.json ]; then npm install --no-audit --no-fund --loglevel=error; fi
	@touch $(STAMP)

setup: $(STAMP)

demo: setup  ## the seed's multi-agent coordination flow, offline, on embedded defaults
	$(BIN)/stepwise run statemachines/examples/multi_agent.yaml \
	  --input '{"question": "How should our payment client retry failed calls?"}'

LINTED := shared tests bench infra functions statemachines layers

test: setup lint  ## the whole suite, one worker per core
	$(BIN)/pytest -n auto

lint: setup typecheck  ## ruff rules (incl. complexity) and formatting, then the type check
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: setup  ## mypy over shared/stepwise, settings in pyproject.toml
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench --quick

bench-full: setup
	$(BIN)/python -m bench --full

synth: setup
	npx cdk synth --quiet

clean:
	rm -rf $(VENV) node_modules cdk.out .stepwise
