"""``StepwiseStack``: everything Stepwise needs in one account and region, wired together."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.stacks.api import Api
from infra.stacks.auth import Auth
from infra.stacks.channels import Channels
from infra.stacks.compute import Compute
from infra.stacks.config import StackConfig
from infra.stacks.data_services import MEMORY_EMBEDDING_MODEL, MEMORY_INDEX, Valkey, Vectors
from infra.stacks.integration import Integration
from infra.stacks.memory import MemoryConsolidation
from infra.stacks.network import Network
from infra.stacks.recovery import Recovery
from infra.stacks.sandbox import ToolSandbox
from infra.stacks.storage import LogBucket, StateStorage
from infra.stacks.triggers import Triggers


class StepwiseStack(Stack):
    def __init__(self, scope: Construct, id: str, *, config: StackConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, description=f"Stepwise agent orchestration ({config.name_prefix})", **kwargs)
        Tags.of(self).add("project", "stepwise")
        Tags.of(self).add("stage", config.stage)
        self.config = config
        self.log_bucket = LogBucket(self, "Logs", config=config).bucket
        self.network = Network(self, "Network", config=config, log_bucket=self.log_bucket)
        self.storage = StateStorage(self, "Storage", config=config, log_bucket=self.log_bucket)
        self.valkey = Valkey(self, "Valkey", config=config, network=self.network)
        self.vectors = Vectors(self, "Vectors", config=config, network=self.network) if config.vector_store else None
        self.integration = Integration(self, "Integration", config=config)

        environment = {
            "STEPWISE_BACKEND": "aws",
            "STEPWISE_EVENTS_TABLE": self.storage.events.table_name,
            "STEPWISE_RUNS_TABLE": self.storage.runs.table_name,
            "STEPWISE_REGISTRY_TABLE": self.storage.registry.table_name,
            "STEPWISE_API_TABLE": self.storage.api.table_name,
            "STEPWISE_BUCKET": self.storage.bucket.bucket_name,
            "STEPWISE_NAME_PREFIX": config.name_prefix,
            "STEPWISE_API_ALLOWED_MODULES": config.allowed_modules,
            "STEPWISE_VALKEY_URL": self.valkey.url,
            "STEPWISE_VALKEY_SECRET": self.valkey.secret.secret_arn,
            "STEPWISE_EVENT_BUS": self.integration.bus.event_bus_name,
            **{f"STEPWISE_{env_var}_SECRET": secret.secret_arn for env_var, secret in self.integration.secrets.items()},
        }
        if self.vectors is not None:
            environment["STEPWISE_OPENSEARCH_ENDPOINT"] = self.vectors.endpoint_url
            environment["STEPWISE_MEMORY_BACKEND"] = "opensearch"
            environment["STEPWISE_OPENSEARCH_INDEX"] = MEMORY_INDEX
            environment["STEPWISE_MEMORY_EMBEDDER"] = f"bedrock:{MEMORY_EMBEDDING_MODEL}#512"
        self.sandbox = ToolSandbox(self, "Sandbox", config=config)
        environment["STEPWISE_CAPABILITY_SECRET"] = self.sandbox.key.secret_arn
        environment["STEPWISE_SANDBOX_FUNCTION"] = self.sandbox.function.function_name
        self.compute = Compute(self, "Compute", config=config, network=self.network, storage=self.storage, environment=environment)
        for fn in (self.compute.api, self.compute.step):
            self.sandbox.key.grant_read(fn)
        self.compute.step.add_to_role_policy(  # the function itself, not its versions (no ``:*`` wildcard)
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.sandbox.function.function_arn])
        )
        for fn in (self.compute.api, self.compute.step):
            self.integration.bus.grant_put_events_to(fn)
        for secret in self.integration.secrets.values():
            secret.grant_read(self.compute.step)
        for fn in (self.compute.api, self.compute.step):  # both connect to the cache (rate limits, STM, LLM cache)
            self.valkey.secret.grant_read(fn)
        if self.vectors is not None:
            self.vectors.grant(self.compute.step.role)  # type: ignore[arg-type]
        self.auth = Auth(self, "Auth", config=config, storage=self.storage, compute=self.compute)
        self.api = Api(self, "Api", config=config, function=self.compute.api, authorizer=self.auth.authorizer)
        self.channels = Channels(self, "Channels", config=config, storage=self.storage, compute=self.compute, api=self.api)
        self.triggers = Triggers(self, "Triggers", config=config, bus=self.integration.bus, function=self.compute.trigger)
        self.triggers.grant_registration(config, self.integration.bus, self.compute.api, self.compute.trigger)
        if self.vectors is not None:  # long-term memory lives in the collection: consolidate into it on a schedule
            self.memory = MemoryConsolidation(
                self, "Memory", config=config, network=self.network, storage=self.storage, compute=self.compute,
                vectors=self.vectors, environment=environment,
            )  # fmt: skip
            self.valkey.secret.grant_read(self.memory.function)
        self.recovery: Recovery | None = None
        if config.recover_minutes is not None:  # stale Step Functions runs (execution ended, record still active)
            self.recovery = Recovery(
                self, "Recovery", config=config, network=self.network, storage=self.storage, compute=self.compute,
                environment=environment, minutes=config.recover_minutes,
            )  # fmt: skip

        outputs = {
            "ApiUrl": self.api.url,
            "WebSocketUrl": self.api.websocket_url,
            "EventsTable": self.storage.events.table_name,
            "RunsTable": self.storage.runs.table_name,
            "RegistryTable": self.storage.registry.table_name,
            "ApiTable": self.storage.api.table_name,
            "StateBucket": self.storage.bucket.bucket_name,
            "StepFunctionArn": self.compute.step.function_arn,
            "StateMachineRoleArn": self.compute.state_machine_role.role_arn,
            "EventBusName": self.integration.bus.event_bus_name,
            "TriggerFunctionArn": self.compute.trigger.function_arn,
            "SchedulerRoleArn": self.triggers.scheduler_role.role_arn,
            "SandboxFunctionName": self.sandbox.function.function_name,
            "ValkeyEndpoint": self.valkey.cache.attr_endpoint_address,
            "ValkeySecretArn": self.valkey.secret.secret_arn,
            "OpenAiKeySecretArn": self.integration.secrets["OPENAI_API_KEY"].secret_arn,
            "AnthropicKeySecretArn": self.integration.secrets["ANTHROPIC_API_KEY"].secret_arn,
            "CreateApiKeyCommand": (
                f"STEPWISE_BACKEND=aws STEPWISE_API_TABLE={self.storage.api.table_name} "
                + (f"STEPWISE_USAGE_PLAN_ID={next(iter(self.api.usage_plans.values())).usage_plan_id} " if self.api.usage_plans else "")
                + ".venv/bin/python -m stepwise.api.keys create --tenant default"
            ),
        }
        for name, plan in self.api.usage_plans.items():
            outputs[f"UsagePlan{_pascal(name)}Id"] = plan.usage_plan_id
        if self.auth.user_pool is not None and self.auth.client is not None:
            outputs["UserPoolId"] = self.auth.user_pool.user_pool_id
            outputs["UserPoolClientId"] = self.auth.client.user_pool_client_id
        if self.auth.jwt_env:
            outputs["JwtIssuer"] = self.auth.jwt_env["STEPWISE_JWT_ISSUER"]
        if self.recovery is not None:
            outputs["RecoverFunctionName"] = self.recovery.function.function_name
        if self.vectors is not None:
            outputs["VectorCollectionEndpoint"] = self.vectors.endpoint_url
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
