"""An example agent-code package: deployed with ``-c stepwise:code=docs/examples/agent-code`` (docs/deploy.md)."""
