"""Recovery of stale Step Functions runs: the ``recover`` Lambda (functions/recover/handler.py) on two EventBridge
rules — Step Functions' status-change event of an agent execution that ended FAILED, TIMED_OUT or ABORTED (that
run, within seconds), and a rate rule (``stepwise:recoverEvery`` minutes, default 5: every run in flight, the
backstop for a lost event; ``false`` deploys neither rule nor the function).

A run whose execution ended (failed while recording its failure, timed out, stopped by hand) while its record
still says running or waiting is found by ``Stepwise.stale_runs`` and recovered by ``Stepwise.recover``: a
compare-and-set to failed naming the execution, then a redrive (execution ``<run>--r<n>``). The function runs the
same client as the step (same environment and layers, so graphs of ``stepwise:code`` hydrate), in the VPC like
it: DynamoDB and S3 through the gateway endpoints, Step Functions through the NAT, as the api does.

Its role may: use the runs/events/registry tables and state objects exactly as the step does
(``Compute.grant_state``); ``DescribeExecution`` on the agents' executions; start an execution of an agent state
machine (publishing the run's version first when the alias has moved on, hence ``UpdateStateMachine`` and
``PassRole`` of the state-machine role to Step Functions only). Nothing else: no API table, no secrets, no cache.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.stacks.compute import START_ACTIONS, Compute, nag_resource
from infra.stacks.config import StackConfig
from infra.stacks.nag import acknowledge
from infra.stacks.network import Network
from infra.stacks.storage import StateStorage

#: What Step Functions calls an execution that ended without finishing (``ENDED`` in functions/recover/handler.py).
ENDED_STATUSES = ("ABORTED", "FAILED", "TIMED_OUT")


class Recovery(Construct):
    """The ``recover`` function and the two rules that invoke it: an agent execution's end, and a rate."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: StackConfig,
        network: Network,
        storage: StateStorage,
        compute: Compute,
        environment: dict[str, str],
        minutes: int,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        env = {
            **environment,  # the same Settings as the step: it recovers runs through the same client
            "STEPWISE_STEP_FUNCTION_ARN": compute.step_arn,
            "STEPWISE_STATE_MACHINE_ROLE_ARN": compute.state_machine_role.role_arn,
        }
        self.function = compute._function(
            "Recover", f"{config.name_prefix}-recover", "recover", config, network, env, memory=1024, timeout=Duration.minutes(5)
        )
        compute.grant_state(self.function, storage)
        compute._grant_state_machines_to(config, self.function, START_ACTIONS)
        executions = stack.format_arn(
            service="states", resource="execution", resource_name=f"{config.name_prefix}-*", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        self.function.add_to_role_policy(iam.PolicyStatement(actions=["states:DescribeExecution"], resources=[f"{executions}:*"]))
        acknowledge(
            self.function,
            f"AwsSolutions-IAM5[{nag_resource(stack, f'{executions}:*')}]",
            f"executions of agent state machines created at run time by the registry, all named {config.name_prefix}-<graph>",
        )
        self.rule = events.Rule(
            self,
            "Schedule",
            schedule=events.Schedule.rate(Duration.minutes(minutes)),
            description=f"Recover stale Step Functions runs every {minutes} min (functions/recover, Stepwise.recover_stale)",
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],  # the next pass retries; passes are idempotent
        )
        machines = stack.format_arn(
            service="states", resource="stateMachine", resource_name=f"{config.name_prefix}-", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        self.on_ended = events.Rule(
            self,
            "ExecutionEnded",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={"status": list(ENDED_STATUSES), "stateMachineArn": [{"prefix": machines}]},
            ),
            description="Recover the run of an agent execution that ended FAILED, TIMED_OUT or ABORTED (functions/recover)",
            # a retry is harmless (recovering a run twice skips the second) and the rate rule backs up the last one
            targets=[targets.LambdaFunction(self.function, retry_attempts=2, max_event_age=Duration.hours(1))],
        )
