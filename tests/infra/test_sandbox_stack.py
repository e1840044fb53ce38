"""The AWS tool sandbox: a Lambda outside the VPC whose role can only write its own logs, read-only code,
invoked by the step only; the capability-token key is a Secrets Manager secret the step and API can read."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import Synth


def _sandbox(synth: Synth) -> tuple[str, dict[str, Any]]:
    [(fid, fn)] = [
        (k, f) for k, f in synth.resources("AWS::Lambda::Function").items() if f["Properties"]["FunctionName"].endswith("-sandbox")
    ]
    return fid, fn["Properties"]


def test_sandbox_function_has_no_vpc_no_layer_no_environment(synth: Synth) -> None:
    _, props = _sandbox(synth)
    assert "VpcConfig" not in props and "Layers" not in props and "Environment" not in props
    assert props["Runtime"] == "python3.12" and props["Handler"] == "handler.handler"


def test_sandbox_role_may_only_write_its_logs(synth: Synth) -> None:
    _, props = _sandbox(synth)
    role_id = props["Role"]["Fn::GetAtt"][0]
    role = synth.raw["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role  # not even AWSLambdaBasicExecutionRole
    policies = [p for p in synth.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]]
    actions = {
        a
        for p in policies
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {"logs:CreateLogStream", "logs:PutLogEvents"}
    for p in policies:
        for s in p["Properties"]["PolicyDocument"]["Statement"]:
            assert s["Resource"] != "*"


def test_step_invokes_the_sandbox_and_reads_the_capability_key(synth: Synth) -> None:
    fid, _ = _sandbox(synth)
    step = next(
        f["Properties"] for f in synth.resources("AWS::Lambda::Function").values() if f["Properties"]["FunctionName"].endswith("-step")
    )
    env = step["Environment"]["Variables"]
    [secret_id] = synth.resources("AWS::SecretsManager::Secret").keys() & {
        k for k in synth.raw["Resources"] if k.startswith("SandboxCapabilityKey")
    }
    assert env["STEPWISE_CAPABILITY_SECRET"] == {"Ref": secret_id}
    assert env["STEPWISE_SANDBOX_FUNCTION"] == {"Ref": fid}
    # the replay guard is shared by every step container: spent token ids go to the stack's Valkey (ElastiCache)
    assert "STEPWISE_VALKEY_URL" in env and "VpcConfig" in step
    statements = [
        s
        for k, p in synth.resources("AWS::IAM::Policy").items()
        if "ComputeStepServiceRole" in k
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    invoke = [s for s in statements if s["Action"] == "lambda:InvokeFunction" and fid in str(s["Resource"])]
    reads = [s for s in statements if "secretsmanager:GetSecretValue" in s["Action"] and secret_id in str(s["Resource"])]
    assert invoke and reads
