"""The Lambdas (``api``, ``step``) on one shared layer, the role agent state machines run with, and the
built-in workflows of ``statemachines/`` compiled at synth time by the compiler the engine uses."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import ArnFormat, AssetHashType, BundlingOptions, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from layers.build import LayerBuild, local_bundling, source_hash

from infra.stacks.config import StackConfig
from infra.stacks.nag import acknowledge
from infra.stacks.network import Network
from infra.stacks.storage import StateStorage
from stepwise.asl.compiler import compile_graph
from stepwise.graph.loader import load_file
from stepwise.state.dynamodb_schema import RUNS_INDEXES

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = lambda_.Runtime.PYTHON_3_12
#: What the api function may do to agent state machines (deploy versions, move the alias, start runs).
DEPLOY_ACTIONS = [
    "states:CreateStateMachine", "states:UpdateStateMachine", "states:DescribeStateMachine",
    "states:PublishStateMachineVersion", "states:CreateStateMachineAlias", "states:UpdateStateMachineAlias",
    "states:DescribeStateMachineAlias", "states:StartExecution", "states:TagResource",
]  # fmt: skip
#: What the trigger function may do: start a run of the version its alias names (publishing it if needed).
START_ACTIONS = [
    "states:DescribeStateMachine", "states:DescribeStateMachineAlias", "states:UpdateStateMachine",
    "states:PublishStateMachineVersion", "states:StartExecution",
]  # fmt: skip
RUNTIME_REASON = "the layer is built from CPython 3.12 wheels (pip --python-version 3.12); the runtime is pinned to match"


def builtin_workflows(root: Path = ROOT / "statemachines") -> list[Path]:
    """Every graph file under statemachines/ (the built-in and example workflows)."""
    return sorted(p for p in root.rglob("*.yaml") if p.is_file())


def layer_code(config: StackConfig) -> lambda_.Code:
    """The layer asset: bundled locally by pip (no Docker), or, with ``stepwise:bundle=false``, left unbuilt."""
    options = {"asset_hash": source_hash(), "asset_hash_type": AssetHashType.CUSTOM, "exclude": ["__pycache__", "*.pyc"]}
    if not config.bundle:
        return lambda_.Code.from_asset(str(ROOT / "layers"), **options)  # type: ignore[arg-type]
    bundling = BundlingOptions(
        image=RUNTIME.bundling_image,  # never pulled: local bundling always succeeds or raises
        local=local_bundling(LayerBuild()),
        command=["echo", "the layer is built locally (layers/build.py), never in a container"],
    )
    return lambda_.Code.from_asset(str(ROOT / "layers"), bundling=bundling, **options)  # type: ignore[arg-type]


def agent_code(config: StackConfig) -> lambda_.Code | None:
    """The agent-code layer asset: every package of the ``stepwise:code`` directories under ``python/`` (what
    Lambda puts on ``sys.path``), staged at synth time; CDK hashes the staged content, so a code change
    publishes a new layer version. None without ``stepwise:code``."""
    if not config.code_dirs:
        return None
    import atexit
    import shutil
    import tempfile

    from infra.stacks.config import code_packages, resolve_code_dir

    staged = Path(tempfile.mkdtemp(prefix="stepwise-agent-code-")) / "python"
    # CDK copies the asset into cdk.out when the app synthesizes, after this returns: remove it at exit
    atexit.register(shutil.rmtree, staged.parent, ignore_errors=True)
    staged.mkdir()
    for directory in config.code_dirs:
        source = resolve_code_dir(directory)
        for package in code_packages(source):
            if (staged / package).exists():
                raise ValueError(f"stepwise:code: package {package!r} is in two of the code directories; rename one")
            shutil.copytree(source / package, staged / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return lambda_.Code.from_asset(str(staged.parent))


class Compute(Construct):
    def __init__(
        self, scope: Construct, id: str, *, config: StackConfig, network: Network, storage: StateStorage, environment: dict[str, str]
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=layer_code(config),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.X86_64],
            description="stepwise + its runtime dependencies (manylinux2014_x86_64, CPython 3.12)",
        )
        code = agent_code(config)
        self.code_layer = (
            lambda_.LayerVersion(
                self,
                "AgentCode",
                code=code,
                compatible_runtimes=[RUNTIME],
                description=f"your agents' code (stepwise:code): {', '.join(config.code_dirs)}"[:256],
            )
            if code is not None
            else None
        )
        step_name = f"{config.name_prefix}-step"
        # Built from the name, not the function's attribute: the step's own environment needs it (no cycle).
        self.step_arn = stack.format_arn(
            service="lambda", resource="function", resource_name=step_name, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        self.state_machine_role = iam.Role(
            self,
            "StateMachineRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}),
            description="Execution role of the agent state machines the registry creates at run time, and of the built-in workflows",
        )
        env = {
            **environment,
            "STEPWISE_STEP_FUNCTION_ARN": self.step_arn,
            "STEPWISE_STATE_MACHINE_ROLE_ARN": self.state_machine_role.role_arn,
        }
        self.step = self._function("Step", step_name, "step", config, network, env, memory=1769, timeout=Duration.minutes(5))
        self.api = self._function(
            "Api", f"{config.name_prefix}-api", "api", config, network, env, memory=1024, timeout=Duration.seconds(29)
        )
        # EventBridge rules and Scheduler schedules start runs through it (functions/trigger, infra/stacks/triggers.py)
        self.trigger = self._function(
            "Trigger", f"{config.name_prefix}-trigger", "trigger", config, network, env, memory=1024, timeout=Duration.seconds(60)
        )

        # the state machines invoke the step (and only the step)
        self.state_machine_role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.step.function_arn, f"{self.step.function_arn}:*"])
        )
        self.state_machine_role.add_to_policy(
            iam.PolicyStatement(
                actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"],
                resources=["*"],
            )
        )
        step_id = stack.get_logical_id(self.step.node.default_child)  # type: ignore[arg-type]
        acknowledge(self.state_machine_role, f"AwsSolutions-IAM5[Resource::<{step_id}.Arn>:*]", "invoking the step's versions and aliases")
        acknowledge(
            self.state_machine_role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray and CloudWatch Logs delivery actions have no resource-level permissions",
        )

        self._grant_state(storage)
        self._grant_state_machines(config)
        self.builtins = self._builtin_workflows(config)

    def _function(
        self, id: str, name: str, folder: str, config: StackConfig, network: Network, env: dict[str, str], *, memory: int, timeout: Duration
    ) -> lambda_.Function:
        log_group = logs.LogGroup(self, f"{id}Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY)
        fn = lambda_.Function(
            self,
            id,
            function_name=name,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(ROOT / "functions" / folder), exclude=["__pycache__", "*.pyc"]),
            layers=[self.layer, *([self.code_layer] if self.code_layer is not None else [])],
            memory_size=memory,
            timeout=timeout,
            tracing=lambda_.Tracing.ACTIVE,
            vpc=network.vpc,
            vpc_subnets=network.private_subnets,
            security_groups=[network.functions_sg],
            log_group=log_group,
            environment={**env, "POWERTOOLS_SERVICE_NAME": f"stepwise-{folder}", "POWERTOOLS_METRICS_NAMESPACE": "Stepwise"},
            description=f"Stepwise {folder} (functions/{folder}/handler.py)",
        )
        acknowledge(fn, "AwsSolutions-L1", RUNTIME_REASON)
        acknowledge(
            fn,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "AWS-maintained policy for writing the function's own logs",
        )
        acknowledge(
            fn,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]",
            "AWS-maintained policy for the ENIs of a function in a VPC",
        )
        acknowledge(fn, "AwsSolutions-IAM5[Resource::*]", "X-Ray tracing actions have no resource-level permissions")
        return fn

    def _grant_state(self, storage: StateStorage) -> None:
        """Exactly the DynamoDB/S3 actions the adapters use, on exactly these tables, index and key prefixes."""
        for fn in (self.api, self.step, self.trigger):
            self.grant_state(fn, storage)
        self.api.add_to_role_policy(
            # Update/Delete: WebSocket subscriptions and disconnects (stepwise.api.websocket) live in this table too
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                resources=[storage.api.table_arn],
            )
        )
        self.trigger.add_to_role_policy(  # the agent and its aliases, the event-id claim (conditional put), thread owners
            iam.PolicyStatement(actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"], resources=[storage.api.table_arn])
        )

    def grant_state(self, fn: lambda_.Function, storage: StateStorage) -> None:
        """The run/event/registry tables and state objects, as the step uses them (also the recover function)."""
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:ConditionCheckItem", "dynamodb:Scan"],
                resources=[storage.events.table_arn],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:BatchGetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:Query",
                    "dynamodb:Scan",
                ],
                resources=[storage.runs.table_arn, *(f"{storage.runs.table_arn}/index/{index.name}" for index in RUNS_INDEXES)],
            )
        )
        fn.add_to_role_policy(iam.PolicyStatement(actions=["dynamodb:GetItem", "dynamodb:PutItem"], resources=[storage.registry.table_arn]))
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[storage.bucket.arn_for_objects("snapshots/*"), storage.bucket.arn_for_objects("blobs/*")],
            )
        )
        bucket_id = Stack.of(self).get_logical_id(storage.bucket.node.default_child)  # type: ignore[arg-type]
        for prefix in ("snapshots", "blobs"):
            acknowledge(
                fn,
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{prefix}/*]",
                "objects are keyed by hashed thread id under this prefix (stepwise.state.s3)",
            )

    def _grant_state_machines(self, config: StackConfig) -> None:
        """The api function deploys agent state machines (one per graph name, prefixed) and drives their executions;
        the trigger function (and the step function, for a queued run) starts executions, publishing the run's
        version first when the alias is elsewhere."""
        self._grant_state_machines_to(config, self.api, DEPLOY_ACTIONS)
        self._grant_state_machines_to(config, self.trigger, START_ACTIONS)
        # the step function starts a thread's queued run when the run before it ends (double texting `enqueue`)
        self._grant_state_machines_to(config, self.step, START_ACTIONS)
        executions = Stack.of(self).format_arn(
            service="states", resource="execution", resource_name=f"{config.name_prefix}-*", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        self.api.add_to_role_policy(
            iam.PolicyStatement(actions=["states:StopExecution", "states:DescribeExecution"], resources=[f"{executions}:*"])
        )
        # task tokens are not resources: SendTaskSuccess/Failure/Heartbeat cannot be scoped by ARN
        self.api.add_to_role_policy(
            iam.PolicyStatement(actions=["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"], resources=["*"])
        )
        acknowledge(
            self.api,
            f"AwsSolutions-IAM5[{nag_resource(Stack.of(self), f'{executions}:*')}]",
            f"agent state machines are created at run time by the registry, one per graph, all named {config.name_prefix}-<graph>",
        )

    def _grant_state_machines_to(self, config: StackConfig, fn: lambda_.Function, actions: list[str]) -> None:
        stack = Stack.of(self)
        machines = stack.format_arn(
            service="states", resource="stateMachine", resource_name=f"{config.name_prefix}-*", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        fn.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=[machines, f"{machines}:*"]))
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.state_machine_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "states.amazonaws.com"}},
            )
        )
        for arn in (machines, f"{machines}:*"):
            acknowledge(
                fn,
                f"AwsSolutions-IAM5[{nag_resource(stack, arn)}]",
                f"agent state machines are created at run time by the registry, one per graph, all named {config.name_prefix}-<graph>",
            )

    def _builtin_workflows(self, config: StackConfig) -> dict[str, sfn.StateMachine]:
        machines: dict[str, sfn.StateMachine] = {}
        for path in builtin_workflows():
            spec = load_file(path)
            asl = compile_graph(spec, step_arn=self.step.function_arn)
            log_group = logs.LogGroup(
                self, f"Builtin{_pascal(spec.name)}Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
            )
            machines[spec.name] = sfn.StateMachine(
                self,
                f"Builtin{_pascal(spec.name)}",
                state_machine_name=f"{config.name_prefix}-builtin-{spec.name}"[:80],
                definition_body=sfn.DefinitionBody.from_string(json.dumps(asl, sort_keys=True)),
                role=self.state_machine_role,
                state_machine_type=sfn.StateMachineType.STANDARD,
                tracing_enabled=True,
                logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
                comment=f"built-in workflow {path.relative_to(ROOT).as_posix()} ({spec.ref})",
            )
        return machines


def nag_resource(stack: Stack, arn: str) -> str:
    """How cdk-nag spells a resource in a finding id: pseudo parameters as ``<AWS::Region>``, literals as they are."""
    for token, name in ((stack.partition, "AWS::Partition"), (stack.region, "AWS::Region"), (stack.account, "AWS::AccountId")):
        if Token.is_unresolved(token):
            arn = arn.replace(token, f"<{name}>")
    return f"Resource::{arn}"


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").replace(".", "-").split("-"))
