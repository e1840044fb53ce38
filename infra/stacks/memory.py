"""Background memory consolidation on AWS: the ``memory`` Lambda (functions/memory/handler.py) on the
shared layer, in the VPC (it reaches ElastiCache and the OpenSearch VPC endpoint), invoked by an
EventBridge schedule. It may read the event log and use the vector collection — nothing else."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.stacks.compute import Compute
from infra.stacks.config import StackConfig
from infra.stacks.data_services import Vectors
from infra.stacks.network import Network
from infra.stacks.storage import StateStorage

SCHEDULE_MINUTES = 15


class MemoryConsolidation(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: StackConfig,
        network: Network,
        storage: StateStorage,
        compute: Compute,
        vectors: Vectors,
        environment: dict[str, str],
    ) -> None:
        super().__init__(scope, id)
        env = {
            **environment,  # the same Settings as the step (it reads the event log through the same client)
            "STEPWISE_STEP_FUNCTION_ARN": compute.step_arn,
            "STEPWISE_STATE_MACHINE_ROLE_ARN": compute.state_machine_role.role_arn,
        }
        self.function = compute._function(
            "Memory", f"{config.name_prefix}-memory", "memory", config, network, env, memory=1769, timeout=Duration.minutes(5)
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:Query", "dynamodb:GetItem"], resources=[storage.events.table_arn])
        )
        vectors.grant(self.function.role)  # type: ignore[arg-type]
        self.rule = events.Rule(
            self,
            "Schedule",
            schedule=events.Schedule.rate(Duration.minutes(SCHEDULE_MINUTES)),
            description="Consolidate agents' short-term memory into long-term memory (stepwise.memory.worker)",
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )
