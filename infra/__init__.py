"""The CDK app (``infra/app.py``) and its stacks/constructs (``infra/stacks/``)."""
