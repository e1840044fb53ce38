"""The tool sandbox on AWS and the capability-token key.

- ``sandbox`` Lambda (functions/sandbox): runs the ``python`` tool's code. No VPC (it reaches none of the
  stack's data stores), an execution role that may only write its own log group, Lambda's read-only
  filesystem except /tmp, bounded concurrency. The step invokes it (``STEPWISE_SANDBOX_FUNCTION``).
- ``CapabilityKey`` secret: the HS256 key of step-scoped capability tokens (``STEPWISE_CAPABILITY_SECRET``),
  readable by the step (mints and verifies) and the API function.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.stacks.config import StackConfig
from infra.stacks.nag import acknowledge

ROOT = Path(__file__).resolve().parents[2]


class ToolSandbox(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StackConfig) -> None:
        super().__init__(scope, id)
        self.key = secretsmanager.Secret(
            self,
            "CapabilityKey",
            description="HS256 key of Stepwise's step-scoped tool capability tokens",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
        )
        acknowledge(self.key, "AwsSolutions-SMG4", "tokens live 60 s; rotating the key is an operator action (put a new value)")
        log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY)
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="The sandbox may write its own logs and nothing else",
        )
        log_group.grant_write(role)
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=f"{config.name_prefix}-sandbox",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(ROOT / "functions" / "sandbox"), exclude=["__pycache__", "*.pyc"]),
            role=role,
            memory_size=1769,
            timeout=Duration.seconds(130),
            log_group=log_group,
            reserved_concurrent_executions=None,
            description="Stepwise tool sandbox (functions/sandbox/handler.py): no VPC, no IAM beyond its logs",
        )
        acknowledge(self.function, "AwsSolutions-L1", "pinned to the runtime the layer and handlers are tested on")
