"""Stepwise: agent graphs compiled to Amazon States Language, run durably on Step Functions or locally."""

__version__ = "0.1.0"
