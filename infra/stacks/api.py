"""API Gateway in front of the ``api`` function: a REST API (Lambda proxy) and a WebSocket API.

Authentication happens in the function (API keys hashed per tenant, ``stepwise.api.auth``), so the
gateway's methods are open at the gateway level; a JWT authorizer is the gateway issue's seam. The
WebSocket routes go to the same function (stepwise.api.websocket: ``$connect`` authenticates, messages
subscribe to runs); the pushes come from the ``channels`` function (infra/stacks/channels.py).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.stacks.config import StackConfig
from infra.stacks.nag import acknowledge

AUTH_IN_FUNCTION = (
    "clients authenticate with API keys checked in the api function (stepwise.api.auth); JWT authorizers come with the gateway issue"
)
ACCESS_LOG_FORMAT = (
    '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","requestTime":"$context.requestTime",'
    '"routeKey":"$context.routeKey","eventType":"$context.eventType","status":"$context.status",'
    '"connectionId":"$context.connectionId","integrationLatency":"$context.integrationLatency"}'
)


class Api(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StackConfig, function: lambda_.IFunction) -> None:
        super().__init__(scope, id)
        access_logs = logs.LogGroup(self, "AccessLogs", retention=logs.RetentionDays.THREE_MONTHS, removal_policy=RemovalPolicy.DESTROY)
        self.rest = apigw.LambdaRestApi(
            self,
            "Rest",
            handler=function,
            proxy=True,
            rest_api_name=f"{config.name_prefix}-api",
            description="Stepwise HTTPS API (docs/api.md, docs/openapi.json)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.DESTROY,
            deploy_options=apigw.StageOptions(
                stage_name=config.stage,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=True,
                ),
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # bodies carry user state and API keys: never log them
                throttling_rate_limit=100,
                throttling_burst_limit=200,
            ),
        )  # fmt: skip
        # No models are attached, so this validates declared parameters only; bodies are validated by pydantic in the function.
        self.rest.add_request_validator("Validator", validate_request_parameters=True, validate_request_body=True)
        acknowledge(self.rest, "AwsSolutions-APIG4", AUTH_IN_FUNCTION)
        acknowledge(self.rest, "AwsSolutions-COG4", AUTH_IN_FUNCTION)
        acknowledge(
            self.rest, "AwsSolutions-APIG3", "WAF is optional (about 5 USD/month plus rules); docs/deploy.md shows how to attach a web ACL"
        )
        acknowledge(
            self.rest,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
            "the account-level role API Gateway needs to write execution logs; AWS maintains its policy",
        )

        integration = integrations.WebSocketLambdaIntegration("Function", function)
        self.websocket = apigwv2.WebSocketApi(
            self,
            "WebSocket",
            api_name=f"{config.name_prefix}-ws",
            description="Stepwise live run streams (docs/api.md#websocket-aws)",
            connect_route_options=apigwv2.WebSocketRouteOptions(integration=integration),
            disconnect_route_options=apigwv2.WebSocketRouteOptions(integration=integration),
            default_route_options=apigwv2.WebSocketRouteOptions(integration=integration),
        )
        ws_logs = logs.LogGroup(
            self, "WebSocketAccessLogs", retention=logs.RetentionDays.THREE_MONTHS, removal_policy=RemovalPolicy.DESTROY
        )
        self.websocket_stage = apigwv2.WebSocketStage(
            self,
            "WebSocketStage",
            web_socket_api=self.websocket,
            stage_name=config.stage,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=50, burst_limit=100),
        )
        cfn_stage = self.websocket_stage.node.default_child
        cfn_stage.add_property_override("AccessLogSettings", {"DestinationArn": ws_logs.log_group_arn, "Format": ACCESS_LOG_FORMAT})  # type: ignore[union-attr]
        cfn_stage.add_property_override("DefaultRouteSettings.DataTraceEnabled", False)  # type: ignore[union-attr]
        acknowledge(self.websocket, "AwsSolutions-APIG4", "$connect checks the API key in the api function; " + AUTH_IN_FUNCTION)
        acknowledge(
            self.websocket_stage, "AwsSolutions-APIG1", "access logging is set on the stage through AccessLogSettings (a property override)"
        )

    @property
    def url(self) -> str:
        return self.rest.url

    @property
    def websocket_url(self) -> str:
        return f"wss://{self.websocket.api_id}.execute-api.{Stack.of(self).region}.{Stack.of(self).url_suffix}/{self.websocket_stage.stage_name}"
