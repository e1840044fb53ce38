"""EventBridge bus for lifecycle events and triggers, and the Secrets Manager secrets holding LLM keys.

The secrets are created empty (a placeholder JSON); put the real keys in after deploying:
``aws secretsmanager put-secret-value --secret-id <OpenAiKeySecretArn> --secret-string '{"api_key": "sk-..."}'``.
The step reads them through ``STEPWISE_OPENAI_API_KEY_SECRET`` / ``STEPWISE_ANTHROPIC_API_KEY_SECRET``.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.stacks.config import StackConfig
from infra.stacks.nag import acknowledge

PROVIDERS = {"OPENAI_API_KEY": "OpenAiKey", "ANTHROPIC_API_KEY": "AnthropicKey"}


class Integration(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StackConfig) -> None:
        super().__init__(scope, id)
        self.bus = events.EventBus(self, "Bus", event_bus_name=f"{config.name_prefix}-bus")
        self.secrets: dict[str, secretsmanager.Secret] = {}
        for env_var, construct_id in PROVIDERS.items():
            secret = secretsmanager.Secret(
                self,
                construct_id,
                description=f"Stepwise: {env_var} for the step function (JSON with an api_key field)",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template='{"api_key": ""}', generate_string_key="placeholder", exclude_punctuation=True
                ),
                removal_policy=RemovalPolicy.RETAIN if config.production else RemovalPolicy.DESTROY,
            )
            acknowledge(
                secret,
                "AwsSolutions-SMG4",
                "a third-party LLM provider key: it is rotated at the provider and put here by the operator; no Lambda can rotate it",
            )
            self.secrets[env_var] = secret
