"""One synthesized Stepwise app per test session (a synth takes about 1-2 s): bundling skipped, CloudFormation's
built-in validation off, cdk-nag's AwsSolutions checks on (as in infra/app.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk
from aws_cdk.assertions import Template
from infra.app import build
from infra.stacks.stepwise_stack import StepwiseStack


@dataclass
class Synth:
    app: cdk.App
    stack: StepwiseStack
    template: Template
    raw: dict[str, Any]
    error: str | None
    report: dict[str, Any] | None

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.raw["Resources"].items() if v["Type"] == kind}


def synthesize(outdir: Path, **context: Any) -> Synth:
    app = cdk.App(builtin_cloud_formation_validation=False, outdir=str(outdir), context={"stepwise:bundle": "false", **context})
    stack = build(app)
    error = None
    try:
        app.synth()
    except RuntimeError as exc:  # cdk-nag findings fail the synth; the report says which
        error = str(exc)
    report_file = outdir / "validation-report.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else None
    raw = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
    return Synth(app, stack, Template.from_json(raw), raw, error, report)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    yield synthesize(tmp_path_factory.mktemp("cdk"), **{"stepwise:region": "eu-west-1", "stepwise:account": "123456789012"})
