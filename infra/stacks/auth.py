"""Who may call the REST API: the authorizer Lambda, and optionally a Cognito user pool as the JWT issuer.

- ``authorizer`` Lambda (functions/authorizer/handler.py, ``stepwise.api.authorizer``): API Gateway's REQUEST
  authorizer on every method. It accepts Stepwise API keys (hashed in the API table) and JWTs of the
  configured OIDC issuer, and names the tenant's usage-plan key so API Gateway's usage plans apply per
  tenant. A Lambda authorizer because the API must take both kinds of credential: a Cognito authorizer
  would refuse API keys, and REST APIs (which have usage plans) have no JWT authorizer. Outside the VPC:
  it reads one DynamoDB item and the issuer's JWKS, nothing else. No result caching: a revoked key stops
  working at once.
- The issuer: ``stepwise:cognito=true`` creates a user pool (admin-created users only, MFA required, the
  tenant an immutable ``custom:tenant`` attribute that users cannot write, groups as roles) and an app
  client whose ID tokens the API accepts; or ``stepwise:jwtIssuer`` / ``stepwise:jwtAudience`` name any
  other OIDC issuer. The same ``STEPWISE_JWT_*`` settings go to the api function, which checks again.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.stacks.compute import RUNTIME, RUNTIME_REASON, Compute
from infra.stacks.config import StackConfig
from infra.stacks.nag import acknowledge
from infra.stacks.storage import StateStorage

ROOT = Path(__file__).resolve().parents[2]


class Auth(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StackConfig, storage: StateStorage, compute: Compute) -> None:
        super().__init__(scope, id)
        self.user_pool: cognito.UserPool | None = None
        self.client: cognito.UserPoolClient | None = None
        self.jwt_env: dict[str, str] = {}
        if config.cognito:
            self._cognito(config)
        elif config.jwt_issuer and config.jwt_audience:
            self.jwt_env = {
                "STEPWISE_JWT_ISSUER": config.jwt_issuer,
                "STEPWISE_JWT_AUDIENCE": config.jwt_audience,
                "STEPWISE_JWT_TENANT_CLAIM": config.jwt_tenant_claim,
                "STEPWISE_JWT_ROLES_CLAIM": config.jwt_roles_claim,
            }
        for name, value in self.jwt_env.items():
            compute.api.add_environment(name, value)

        log_group = logs.LogGroup(self, "AuthorizerLogs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY)
        role = iam.Role(
            self,
            "AuthorizerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="authorizer: read API key records in the API table, write its logs",
        )
        log_group.grant_write(role)
        role.add_to_policy(iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[storage.api.table_arn]))
        self.authorizer = lambda_.Function(
            self,
            "Authorizer",
            function_name=f"{config.name_prefix}-authorizer",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(ROOT / "functions" / "authorizer"), exclude=["__pycache__", "*.pyc"]),
            layers=[compute.layer],
            role=role,
            memory_size=512,
            timeout=Duration.seconds(10),
            log_group=log_group,
            environment={
                "STEPWISE_BACKEND": "aws",
                "STEPWISE_API_TABLE": storage.api.table_name,
                "STEPWISE_USAGE_PLANS": "1" if config.usage_plans else "0",
                "POWERTOOLS_SERVICE_NAME": "stepwise-authorizer",
                **self.jwt_env,
            },
            description="Stepwise REST API authorizer (functions/authorizer/handler.py): API keys and OIDC JWTs",
        )
        acknowledge(self.authorizer, "AwsSolutions-L1", RUNTIME_REASON)

    def _cognito(self, config: StackConfig) -> None:
        pool = cognito.UserPool(
            self,
            "UserPool",
            user_pool_name=f"{config.name_prefix}-users",
            self_sign_up_enabled=False,  # an operator creates users, and sets their tenant
            sign_in_aliases=cognito.SignInAliases(email=True),
            custom_attributes={"tenant": cognito.StringAttribute(min_len=1, max_len=63, mutable=False)},
            password_policy=cognito.PasswordPolicy(
                min_length=12, require_digits=True, require_lowercase=True, require_uppercase=True, require_symbols=True
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            deletion_protection=config.production,
            removal_policy=RemovalPolicy.RETAIN if config.production else RemovalPolicy.DESTROY,
        )
        acknowledge(
            pool,
            "AwsSolutions-COG3",
            "threat protection (advanced security) is a paid add-on; enable it on the pool for production if wanted (docs/deploy.md)",
        )
        acknowledge(
            pool,
            "AwsSolutions-COG8",
            "the Plus feature plan (threat protection) is billed per active user; choose it on the pool for production if wanted",
        )
        client = pool.add_client(
            "ApiClient",
            user_pool_client_name=f"{config.name_prefix}-api",
            auth_flows=cognito.AuthFlow(user_srp=True),
            generate_secret=False,
            id_token_validity=Duration.hours(1),
            access_token_validity=Duration.hours(1),
            prevent_user_existence_errors=True,
            read_attributes=cognito.ClientAttributes()
            .with_standard_attributes(email=True, email_verified=True)
            .with_custom_attributes("tenant"),
            write_attributes=cognito.ClientAttributes().with_standard_attributes(email=True),  # never the tenant
        )
        self.user_pool, self.client = pool, client
        stack = Stack.of(self)
        self.jwt_env = {
            # the tokens' iss; the pool's ProviderURL attribute lacks the scheme
            "STEPWISE_JWT_ISSUER": f"https://cognito-idp.{stack.region}.{stack.url_suffix}/{pool.user_pool_id}",
            "STEPWISE_JWT_AUDIENCE": client.user_pool_client_id,  # ID tokens carry the client id as aud
            "STEPWISE_JWT_TENANT_CLAIM": "custom:tenant",
            "STEPWISE_JWT_ROLES_CLAIM": "cognito:groups",
        }
