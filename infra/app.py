"""The CDK app: ``npx cdk synth`` / ``npx cdk deploy``.

cdk.json runs it as ``python3 infra/app.py``: the active interpreter (an activated venv, uv, conda, a CI
image), CDK's convention. That interpreter needs the ``infra`` extra (``pip install -e '.[infra]'``;
``make synth`` puts the dev venv first on PATH). The ``stepwise`` package is taken from this checkout.

AwsSolutions checks (cdk-nag) run on every synth; an unacknowledged finding fails it.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "shared"):  # `infra`, `layers`, `statemachines` and `stepwise` from this checkout
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from stepwise.extras import MissingExtra, needs  # noqa: E402

try:
    with needs("infra", "cdk synth and cdk deploy"):
        import aws_cdk as cdk
        from cdk_nag import AwsSolutionsChecks
except MissingExtra as exc:  # one line instead of a traceback; cdk prints it and exits non-zero
    sys.exit(f"error: {exc} (interpreter: {sys.executable})")

from infra.stacks.config import StackConfig  # noqa: E402
from infra.stacks.stepwise_stack import StepwiseStack  # noqa: E402

#: Feature flags this app relies on, set in code so tests and `cdk synth` build the same thing.
FEATURE_FLAGS = {
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,  # access logs via bucket policy, not ACLs
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/core:enablePartitionLiterals": True,
}


def build(app: cdk.App) -> StepwiseStack:
    """Add the Stepwise stack (settings from context, see infra/stacks/config.py) and the cdk-nag checks to ``app``."""
    for flag, value in FEATURE_FLAGS.items():
        app.node.set_context(flag, value)
    config = StackConfig.from_context(app.node)
    env = cdk.Environment(account=config.account, region=config.region) if config.region or config.account else None
    stack = StepwiseStack(app, config.name_prefix, config=config, env=env)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stack


if __name__ == "__main__":
    application = cdk.App()
    build(application)
    application.synth()
