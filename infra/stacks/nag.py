"""cdk-nag (AwsSolutions) acknowledgements: every one carries the reason it is acceptable here."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one finding id (``AwsSolutions-IAM5[Resource::...]`` for a single finding) on ``scope``."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))
