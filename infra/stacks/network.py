"""The VPC the functions run in: private subnets with NAT egress (LLM APIs), free gateway endpoints
for DynamoDB and S3, flow logs to the log bucket, and one security group per kind of peer."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.stacks.config import StackConfig


class Network(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StackConfig, log_bucket: s3.IBucket) -> None:
        super().__init__(scope, id)
        # no NAT (e.g. LocalStack): isolated subnets; the functions then reach AWS through endpoints only
        private = ec2.SubnetType.PRIVATE_WITH_EGRESS if config.nat_gateways > 0 else ec2.SubnetType.PRIVATE_ISOLATED
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=private, cidr_mask=22),
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
            },
        )
        self.vpc.add_flow_log(
            "FlowLogs",
            destination=ec2.FlowLogDestination.to_s3(log_bucket, "vpc-flow-logs/"),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        self.private_subnets = ec2.SubnetSelection(subnet_type=private)
        self.functions_sg = ec2.SecurityGroup(self, "FunctionsSg", vpc=self.vpc, description="Stepwise Lambdas (egress only)")
        self.valkey_sg = ec2.SecurityGroup(
            self,
            "ValkeySg",
            vpc=self.vpc,
            description="ElastiCache Serverless Valkey: reachable from the Stepwise Lambdas",
            allow_all_outbound=False,
        )
        self.valkey_sg.add_ingress_rule(
            self.functions_sg, ec2.Port.tcp_range(6379, 6380), "Valkey (primary and reader endpoints) from the Lambdas"
        )
        self.vectors_sg = ec2.SecurityGroup(
            self,
            "VectorsSg",
            vpc=self.vpc,
            description="OpenSearch Serverless VPC endpoint: HTTPS from the Stepwise Lambdas",
            allow_all_outbound=False,
        )
        self.vectors_sg.add_ingress_rule(self.functions_sg, ec2.Port.tcp(443), "OpenSearch Serverless over HTTPS from the Lambdas")
