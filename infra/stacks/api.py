"""API Gateway in front of the ``api`` function: a REST API (Lambda proxy) and a WebSocket API.

Every REST method goes through the authorizer Lambda (infra/stacks/auth.py): API keys or OIDC JWTs, the
tenant named to API Gateway. With usage plans on (``stepwise:usagePlans``, the default) every method
requires a usage-plan key, which the authorizer supplies per tenant (key source ``AUTHORIZER``), so each
tenant is throttled by its plan before the function runs — the first line; the function's Valkey
token bucket (``STEPWISE_RATE_LIMITS``) is the second. A tenant in no plan gets 403 ``no_usage_plan``. The
WebSocket routes go to the same function (stepwise.api.websocket: ``$connect`` authenticates, messages
subscribe to runs); the pushes come from the ``channels`` function (infra/stacks/channels.py).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.stacks.config import StackConfig, UsagePlan
from infra.stacks.nag import acknowledge

AUTH_IN_FUNCTION = "$connect authenticates in the api function (API key or JWT, stepwise.api.auth), as the REST authorizer does"
LAMBDA_AUTHORIZER = (
    "a Lambda REQUEST authorizer validates Cognito (or any OIDC issuer's) JWTs and API keys; a Cognito authorizer would refuse API keys"
)
NO_PLAN = (
    '{"error": {"code": "no_usage_plan", "message": "this tenant is in no usage plan; an operator runs '
    'python -m stepwise.api.keys plan --tenant <tenant> --plan-id <UsagePlan id>"}}'
)
THROTTLED = '{"error": {"code": "rate_limited", "message": "too many requests for this tenant\'s usage plan; retry later"}}'

ACCESS_LOG_FORMAT = (
    '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","requestTime":"$context.requestTime",'
    '"routeKey":"$context.routeKey","eventType":"$context.eventType","status":"$context.status",'
    '"connectionId":"$context.connectionId","integrationLatency":"$context.integrationLatency"}'
)


class Api(Construct):
    def __init__(
        self, scope: Construct, id: str, *, config: StackConfig, function: lambda_.IFunction, authorizer: lambda_.IFunction
    ) -> None:
        super().__init__(scope, id)
        self.authorizer = apigw.RequestAuthorizer(
            self,
            "Authorizer",
            handler=authorizer,
            authorizer_name=f"{config.name_prefix}-authorizer",
            identity_sources=[],  # either header may carry the credential; no identity source means no cache
            results_cache_ttl=Duration.seconds(0),
        )
        access_logs = logs.LogGroup(self, "AccessLogs", retention=logs.RetentionDays.THREE_MONTHS, removal_policy=RemovalPolicy.DESTROY)
        self.rest = apigw.LambdaRestApi(
            self,
            "Rest",
            handler=function,
            proxy=True,
            rest_api_name=f"{config.name_prefix}-api",
            description="Stepwise HTTPS API (docs/api.md, docs/openapi.json)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            default_method_options=apigw.MethodOptions(
                authorizer=self.authorizer, authorization_type=apigw.AuthorizationType.CUSTOM, api_key_required=bool(config.usage_plans)
            ),
            api_key_source_type=apigw.ApiKeySourceType.AUTHORIZER if config.usage_plans else None,
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
        self._console_pages(function)
        acknowledge(self.rest, "AwsSolutions-COG4", LAMBDA_AUTHORIZER)
        self.usage_plans = {plan.name: self._usage_plan(plan) for plan in config.usage_plans}
        if config.usage_plans:
            for name, kind, status, body in (
                ("NoUsagePlan", apigw.ResponseType.INVALID_API_KEY, "403", NO_PLAN),
                ("Throttled", apigw.ResponseType.THROTTLED, "429", THROTTLED),
                ("QuotaExceeded", apigw.ResponseType.QUOTA_EXCEEDED, "429", THROTTLED),
            ):
                self.rest.add_gateway_response(name, type=kind, status_code=status, templates={"application/json": body})
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

    def _console_pages(self, function: lambda_.IFunction) -> None:
        """The web console's static pages (``GET /``, ``/console``, ``/console/{file}``) skip the authorizer:
        a browser navigating to them sends no credentials, and they hold no data (the function serves a
        fixed set of files with a strict CSP; every data route stays behind the authorizer)."""
        pages = apigw.LambdaIntegration(function)
        console = self.rest.root.add_resource("console")
        for resource in (self.rest.root, console, console.add_resource("{file}")):
            method = resource.add_method("GET", pages, authorization_type=apigw.AuthorizationType.NONE, api_key_required=False)
            acknowledge(method, "AwsSolutions-APIG4", "the console's static pages: public files, no data (stepwise.api.console)")
            acknowledge(method, "AwsSolutions-COG4", "the console's static pages: public files, no data (stepwise.api.console)")
        # GET /health is the API's unauthenticated liveness route (routes/health.py): a load balancer or probe sends no key
        health = self.rest.root.add_resource("health").add_method(
            "GET", pages, authorization_type=apigw.AuthorizationType.NONE, api_key_required=False
        )
        acknowledge(health, "AwsSolutions-APIG4", "GET /health answers liveness only ({status, version}), no tenant data")
        acknowledge(health, "AwsSolutions-COG4", "GET /health answers liveness only ({status, version}), no tenant data")

    def _usage_plan(self, plan: UsagePlan) -> apigw.UsagePlan:
        return self.rest.add_usage_plan(
            f"UsagePlan{plan.name.replace('-', '').replace('_', '').capitalize()}",
            name=f"{self.rest.rest_api_name}-{plan.name}",
            description=f"Stepwise usage plan {plan.name!r}: tenants enrolled with python -m stepwise.api.keys plan",
            throttle=apigw.ThrottleSettings(rate_limit=plan.rate, burst_limit=plan.burst),
            quota=apigw.QuotaSettings(limit=plan.quota, period=apigw.Period[plan.period]) if plan.quota else None,
            api_stages=[apigw.UsagePlanPerApiStage(api=self.rest, stage=self.rest.deployment_stage)],
        )

    @property
    def url(self) -> str:
        return self.rest.url

    @property
    def websocket_url(self) -> str:
        return f"wss://{self.websocket.api_id}.execute-api.{Stack.of(self).region}.{Stack.of(self).url_suffix}/{self.websocket_stage.stage_name}"
