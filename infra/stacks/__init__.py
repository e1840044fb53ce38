"""Stepwise on AWS: one stack (``StepwiseStack``) composed of constructs named for what they are.

- ``network.Network``          VPC, subnets, gateway endpoints, flow logs, security groups
- ``storage.StateStorage``     DynamoDB tables (events, runs, registry, api) and the S3 state bucket
- ``data_services.Valkey``     ElastiCache Serverless (Valkey) for short-term memory, caches, limits
- ``data_services.Vectors``    OpenSearch Serverless vector collection, reachable through a VPC endpoint
- ``integration.Integration``  EventBridge bus and the Secrets Manager secrets for LLM keys
- ``compute.Compute``          the shared layer, the ``api`` and ``step`` Lambdas, the state-machine role
                               and the built-in workflows compiled from ``statemachines/``
- ``api.Api``                  API Gateway REST API (proxy to ``api``) and WebSocket API, with access logs
"""
