"""Short-term memory (ElastiCache Serverless, Valkey) and long-term vectors (OpenSearch Serverless),
both reachable only from inside the VPC."""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_iam as iam
from aws_cdk import aws_opensearchserverless as aoss
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.stacks.config import StackConfig
from infra.stacks.nag import acknowledge
from infra.stacks.network import Network
from stepwise.memory.valkey import ACL_RULES

MEMORY_INDEX = "stepwise-memory"  # the long-term memory index (STEPWISE_OPENSEARCH_INDEX)
MEMORY_EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0"  # STEPWISE_MEMORY_EMBEDDER on AWS
VALKEY_USER = "stepwise"
# ElastiCache passwords: 16-128 printable characters without @ " / (and no spaces); also kept URL-safe
PASSWORD_EXCLUDED = "@\"/\\ '`%:?#[]{}<>|^&+=;,"


class Valkey(Construct):
    """The serverless cache with RBAC: a user group whose ``stepwise`` user (access string ``ACL_RULES``) has
    a generated password kept in Secrets Manager, and whose ``default`` user is switched off, so every
    connection must authenticate. Functions get ``STEPWISE_VALKEY_SECRET`` and read the secret at cold start
    (``stepwise.memory.valkey``)."""

    def __init__(self, scope: Construct, id: str, *, config: StackConfig, network: Network) -> None:
        super().__init__(scope, id)
        subnets = network.vpc.select_subnets(subnet_group_name="private").subnet_ids
        self.secret = secretsmanager.Secret(
            self,
            "Credentials",
            description="Stepwise: the ElastiCache user the functions connect as (JSON username/password)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=f'{{"username": "{VALKEY_USER}"}}',
                generate_string_key="password",
                password_length=40,
                exclude_characters=PASSWORD_EXCLUDED,
            ),
            removal_policy=RemovalPolicy.RETAIN if config.production else RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.secret,
            "AwsSolutions-SMG4",
            "rotation must change the ElastiCache user and the secret together (ModifyUser accepts two passwords "
            "during a rotation); it is an operator runbook step, not a rotation Lambda",
        )
        user_prefix = config.name_prefix.lower()
        self.user = elasticache.CfnUser(
            self,
            "User",
            engine="valkey",
            user_id=f"{user_prefix}-{VALKEY_USER}",
            user_name=VALKEY_USER,
            access_string=f"on {ACL_RULES}",
            authentication_mode={"Type": "password", "Passwords": [self.secret.secret_value_from_json("password").unsafe_unwrap()]},
        )  # the password is a CloudFormation dynamic reference, resolved at deploy: never in the template
        self.default_user = elasticache.CfnUser(
            self,
            "DefaultUser",
            engine="valkey",
            user_id=f"{user_prefix}-default",
            user_name="default",  # a user group must hold a "default" user: this one cannot log in
            access_string="off -@all",
            authentication_mode={"Type": "no-password-required"},
        )
        self.user_group = elasticache.CfnUserGroup(
            self,
            "Users",
            engine="valkey",
            user_group_id=f"{user_prefix}-users",
            user_ids=[self.user.user_id, self.default_user.user_id],
        )
        self.user_group.node.add_dependency(self.user, self.default_user)
        self.cache = elasticache.CfnServerlessCache(
            self,
            "Cache",
            engine="valkey",
            major_engine_version="8",
            serverless_cache_name=f"{config.name_prefix}-valkey",
            description="Stepwise short-term memory, LLM cache and rate limits",
            security_group_ids=[network.valkey_sg.security_group_id],
            subnet_ids=subnets,
            user_group_id=self.user_group.user_group_id,
            cache_usage_limits=elasticache.CfnServerlessCache.CacheUsageLimitsProperty(
                data_storage=elasticache.CfnServerlessCache.DataStorageProperty(unit="GB", maximum=5),
                ecpu_per_second=elasticache.CfnServerlessCache.ECPUPerSecondProperty(maximum=10000),
            ),
        )
        self.cache.node.add_dependency(self.user_group)

    @property
    def url(self) -> str:
        """``rediss://host:port``: serverless caches only accept TLS."""
        return f"rediss://{self.cache.attr_endpoint_address}:{self.cache.attr_endpoint_port}"


class Vectors(Construct):
    """A VECTORSEARCH collection with AWS-owned encryption, VPC-only network access and a data policy
    naming exactly the roles that may use it."""

    def __init__(self, scope: Construct, id: str, *, config: StackConfig, network: Network) -> None:
        super().__init__(scope, id)
        name = f"{config.name_prefix}-vectors"[:32]
        self.name = name
        collection_rule = [{"ResourceType": "collection", "Resource": [f"collection/{name}"]}]
        encryption = aoss.CfnSecurityPolicy(
            self,
            "Encryption",
            name=f"{name}-enc"[:32],
            type="encryption",
            policy=json.dumps({"Rules": collection_rule, "AWSOwnedKey": True}),
        )
        self.endpoint = aoss.CfnVpcEndpoint(
            self,
            "Endpoint",
            name=f"{config.name_prefix}-aoss"[:32],
            vpc_id=network.vpc.vpc_id,
            subnet_ids=network.vpc.select_subnets(subnet_group_name="private").subnet_ids,
            security_group_ids=[network.vectors_sg.security_group_id],
        )
        policy = [{"Rules": collection_rule, "AllowFromPublic": False, "SourceVPCEs": [self.endpoint.attr_id]}]
        network_policy = aoss.CfnSecurityPolicy(
            self, "Network", name=f"{name}-net"[:32], type="network", policy=Stack.of(self).to_json_string(policy)
        )
        self.collection = aoss.CfnCollection(
            self,
            "Collection",
            name=name,
            type="VECTORSEARCH",
            description="Stepwise long-term memory (k-NN)",
            standby_replicas="ENABLED" if config.production else "DISABLED",
        )
        self.collection.node.add_dependency(encryption)
        self.collection.node.add_dependency(network_policy)
        self._principals: list[str] = []
        self._access = aoss.CfnAccessPolicy(self, "Access", name=f"{name}-data"[:32], type="data", policy="[]")

    def grant(self, role: iam.IRole) -> None:
        """Data access for ``role`` (the data policy) plus the IAM side (``aoss:APIAccessAll`` on this collection)."""
        self._principals.append(role.role_arn)
        # exactly what stepwise.memory.opensearch does: HEAD/PUT the one index, _bulk, _search
        rules = [
            {
                "ResourceType": "index",
                "Resource": [f"index/{self.name}/{MEMORY_INDEX}"],
                "Permission": ["aoss:CreateIndex", "aoss:DescribeIndex", "aoss:ReadDocument", "aoss:WriteDocument"],
            },
        ]
        self._access.policy = Stack.of(self).to_json_string([{"Rules": rules, "Principal": list(self._principals)}])
        role.add_to_principal_policy(iam.PolicyStatement(actions=["aoss:APIAccessAll"], resources=[self.collection.attr_arn]))
        # memories are embedded with Titan: exactly that foundation model
        model = Stack.of(self).format_arn(
            service="bedrock",
            account="",
            resource="foundation-model",
            resource_name=MEMORY_EMBEDDING_MODEL,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        role.add_to_principal_policy(iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=[model]))

    @property
    def endpoint_url(self) -> str:
        return self.collection.attr_collection_endpoint
