"""Triggers on AWS: the deployed graphs' ``triggers:`` as EventBridge rules and Scheduler schedules.

For each ``tenant=graph.yaml`` of ``stepwise:triggers`` (infra/stacks/config.py) the stack loads the graph
and turns its triggers into exactly what ``stepwise.graph.triggers.aws_trigger_specs`` describes — the
same specs ``put_aws_triggers`` creates with boto3 for agents registered later, and that the moto test
(tests/integration/test_triggers_aws.py) runs end to end:

- an event trigger → an EventBridge rule on the Stepwise bus with its pattern, targeting the trigger Lambda
  (``<prefix>-<stage>-trigger``) through an InputTransformer that wraps the event with the tenant, agent
  and trigger; a resource policy lets that rule (and only it) invoke the function;
- a schedule trigger → an EventBridge Scheduler schedule (its expression and timezone, no flexible window)
  whose target is the same function, invoked with the ``Scheduler`` role — which may invoke that one
  function and nothing else, and which only Scheduler in this account may assume.

Agents registered through the API later get theirs from the api function (``stepwise.api.aws_triggers``):
``grant_registration`` gives it the trigger targets in its environment, ``PutRule``/``PutTargets`` on
``<prefix>-<stage>-*`` rules of the bus, ``Create/UpdateSchedule`` on ``<prefix>-<stage>-*`` schedules,
and ``PassRole`` of the Scheduler role to Scheduler only; the trigger function accepts invocations
from those rules.

The agent itself is registered through the API after deploy (``POST /agents`` as that tenant): until then
the trigger Lambda logs the event as stale and drops it.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from infra.stacks.compute import nag_resource
from infra.stacks.config import StackConfig
from infra.stacks.nag import acknowledge
from stepwise.graph.loader import load_file
from stepwise.graph.triggers import RuleSpec, ScheduleSpec, aws_trigger_specs

ROOT = Path(__file__).resolve().parents[2]


class Triggers(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StackConfig, bus: events.IEventBus, function: lambda_.IFunction) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.scheduler_role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}),
            description="EventBridge Scheduler invokes the Stepwise trigger function with it (schedule triggers)",
        )
        self.scheduler_role.add_to_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function.function_arn]))
        self.specs: list[tuple[str, RuleSpec | ScheduleSpec]] = []
        self.rules: list[events.CfnRule] = []
        self.schedules: list[scheduler.CfnSchedule] = []
        for tenant, graph in config.triggers:
            path = Path(graph) if Path(graph).is_absolute() else ROOT / graph
            spec = load_file(path)
            for item in aws_trigger_specs(spec.triggers, tenant=tenant, agent=spec.name, prefix=config.name_prefix):
                self.specs.append((tenant, item))
                construct_id = f"{_pascal(item.name)}"
                if isinstance(item, RuleSpec):
                    rule = events.CfnRule(
                        self,
                        construct_id,
                        name=item.name,
                        event_bus_name=bus.event_bus_name,
                        event_pattern=item.event_pattern,
                        state="ENABLED" if item.enabled else "DISABLED",
                        description=f"Stepwise trigger {item.trigger!r} of {spec.name!r} for tenant {tenant!r} ({graph})",
                        targets=[
                            events.CfnRule.TargetProperty(
                                id="stepwise-trigger",
                                arn=function.function_arn,
                                input_transformer=events.CfnRule.InputTransformerProperty(input_template=item.input_template),
                            )
                        ],
                    )
                    function.add_permission(
                        f"Invoke{construct_id}",
                        principal=iam.ServicePrincipal("events.amazonaws.com"),
                        source_arn=rule.attr_arn,
                        source_account=stack.account,
                    )
                    self.rules.append(rule)
                else:
                    self.schedules.append(
                        scheduler.CfnSchedule(
                            self,
                            construct_id,
                            name=item.name,
                            schedule_expression=item.schedule_expression,
                            schedule_expression_timezone=item.timezone,
                            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                            state="ENABLED" if item.enabled else "DISABLED",
                            description=f"Stepwise trigger {item.trigger!r} of {spec.name!r} for tenant {tenant!r} ({graph})",
                            target=scheduler.CfnSchedule.TargetProperty(
                                arn=function.function_arn,
                                role_arn=self.scheduler_role.role_arn,
                                input=item.input,
                                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=3),
                            ),
                        )
                    )

    def grant_registration(self, config: StackConfig, bus: events.IEventBus, api: lambda_.Function, trigger: lambda_.IFunction) -> None:
        """Let the api function deploy the triggers of agents registered after deploy (stepwise.api.aws_triggers)."""
        stack = Stack.of(self)
        prefix = config.name_prefix
        rules = stack.format_arn(
            service="events", resource="rule", resource_name=f"{bus.event_bus_name}/{prefix}-*", arn_format=ArnFormat.SLASH_RESOURCE_NAME
        )
        schedules = stack.format_arn(
            service="scheduler", resource="schedule", resource_name=f"default/{prefix}-*", arn_format=ArnFormat.SLASH_RESOURCE_NAME
        )
        api.add_environment("STEPWISE_TRIGGER_FUNCTION_ARN", trigger.function_arn)
        api.add_environment("STEPWISE_SCHEDULER_ROLE_ARN", self.scheduler_role.role_arn)
        rule_actions = ["events:PutRule", "events:PutTargets", "events:ListTargetsByRule", "events:RemoveTargets", "events:DeleteRule"]
        api.add_to_role_policy(iam.PolicyStatement(actions=rule_actions, resources=[rules]))
        schedule_actions = ["scheduler:CreateSchedule", "scheduler:UpdateSchedule", "scheduler:GetSchedule", "scheduler:DeleteSchedule"]
        api.add_to_role_policy(iam.PolicyStatement(actions=schedule_actions, resources=[schedules]))
        # listing names a prefix, not an ARN: these take no resource-level permission; what is deleted is still limited above
        api.add_to_role_policy(iam.PolicyStatement(actions=["events:ListRules", "scheduler:ListSchedules"], resources=["*"]))
        api.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.scheduler_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
            )
        )
        trigger.add_permission(
            "InvokeFromRegisteredRules",
            principal=iam.ServicePrincipal("events.amazonaws.com"),
            source_arn=rules,
            source_account=stack.account,
        )
        acknowledge(
            api,
            "AwsSolutions-IAM5[Resource::*]",
            "events:ListRules and scheduler:ListSchedules take no resource ARN; they read names only (to find a dropped "
            "trigger's rule or schedule), and the deletes are limited to the rules and schedules named above",
        )
        bus_id = stack.get_logical_id(bus.node.default_child)  # type: ignore[arg-type]
        for arn, what in ((rules, "rules"), (schedules, "schedules")):
            finding = nag_resource(stack, arn).replace(bus.event_bus_name, f"<{bus_id}>")
            acknowledge(
                api,
                f"AwsSolutions-IAM5[{finding}]",
                f"{what} of agents registered at run time, named {prefix}-<agent>-<trigger>-<hash of tenant, agent, trigger>",
            )


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").replace(".", "-").split("-"))
