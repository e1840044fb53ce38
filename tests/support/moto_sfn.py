"""moto as the Step Functions stand-in: executes our compiled ASL, with Lambda invokes routed in-process.

``moto_stepfunctions()`` is a context manager that

1. enters ``mock_aws`` with moto's ASL interpreter switched on;
2. routes every ``lambda:Invoke`` (moto builds a fresh boto3 client per Task) to a Python callable via
   botocore's public ``before-call.lambda.Invoke`` event, emulating the Lambda runtime's contract: a
   raised exception becomes ``FunctionError`` with ``errorType = type(exc).__name__`` (exactly what the
   Python runtime reports), so the step handler's error naming is tested for real;
3. patches three moto 5.2.1 gaps, each noted where it is done: the ``StateMachine`` deepcopy crash
   (getmoto/moto#10077), executions on an alias or version ARN (moto only runs base ARNs), and the
   retrier's real ``time.sleep`` (retries become instant; the schedule is the local engine's test).

``wait_execution`` polls ``describe_execution`` against a deadline (moto runs executions in a daemon
thread); ``wait_for`` polls any condition the same way. No sleeps-for-luck: every wait has an exit
condition and fails loudly at its deadline.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import threading
import time
import traceback
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from botocore.awsrequest import AWSResponse
from botocore.handlers import BUILTIN_HANDLERS
from botocore.response import StreamingBody

INVOKE_EVENT = "before-call.lambda.Invoke"
DEADLINE_SECONDS = 60.0

LambdaHandler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The attributes of the Lambda runtime's context object that Powertools reads."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/stepwise-step"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


class LambdaRouter:
    """A ``before-call.lambda.Invoke`` handler: function name → in-process handler(event, context)."""

    def __init__(self) -> None:
        self.handlers: dict[str, LambdaHandler] = {}
        self.default: LambdaHandler | None = None
        self.invocations: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def route(self, function: str | None, handler: LambdaHandler) -> None:
        """Route invokes of ``function`` (short name); ``None`` routes every function without its own route."""
        if function is None:
            self.default = handler
        else:
            self.handlers[function] = handler

    def __call__(self, params: dict[str, Any], model: Any, context: Any, **kwargs: Any) -> tuple[AWSResponse, dict[str, Any]]:
        url_path = params["url_path"]
        function_arn = unquote(url_path.split("/functions/", 1)[1].rsplit("/invocations", 1)[0])
        short = function_arn.split(":function:")[-1].split(":")[0]
        body = params.get("body") or b"{}"
        if hasattr(body, "read"):
            body = body.read()
        event = json.loads(body)
        with self._lock:
            self.invocations.append((short, event))
        handler = self.handlers.get(short, self.default)
        function_error = None
        try:
            if handler is None:
                raise LookupError(f"no in-process route for Lambda function {short!r}")
            result = handler(event, LambdaContext(function_name=short, invoked_function_arn=function_arn))
        except Exception as exc:  # noqa: BLE001 - the Lambda runtime turns any exception into a FunctionError
            function_error = "Unhandled"
            result = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "requestId": str(uuid.uuid4()),
                "stackTrace": traceback.format_exception(exc)[-3:],
            }
        raw = json.dumps(result).encode()
        parsed: dict[str, Any] = {
            "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0},
            "StatusCode": 200,
            "ExecutedVersion": "$LATEST",
            "Payload": StreamingBody(io.BytesIO(raw), len(raw)),
        }
        if function_error:
            parsed["FunctionError"] = function_error
        return AWSResponse(url="https://lambda.amazonaws.com" + url_path, status_code=200, headers={}, raw=None), parsed


# -- moto patches -------------------------------------------------------------------------------
def _state_machine_deepcopy(self: Any, memo: dict[int, Any]) -> Any:
    """getmoto/moto#10077 (fixed upstream by #10093, not in 5.2.1): start_execution deep-copies the state
    machine, including its live executions (threads, RLocks) and its backend; copy neither."""
    new = self.__class__.__new__(self.__class__)
    memo[id(self)] = new
    for key, value in self.__dict__.items():
        new.__dict__[key] = [] if key == "executions" else value if key == "backend" else copy.deepcopy(value, memo)
    return new


@contextlib.contextmanager
def _patched_moto() -> Iterator[None]:
    from moto.stepfunctions import models
    from moto.stepfunctions.exceptions import StateMachineDoesNotExist
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    original_describe = models.StepFunctionBackend.describe_state_machine
    original_publish = models.StateMachine.publish
    original_time = retrier_decl.time

    def describe_state_machine(self: Any, arn: str) -> Any:
        # moto 5.2.1 resolves base and version ARNs only; Step Functions also starts executions on an alias
        try:
            return original_describe(self, arn)
        except StateMachineDoesNotExist:
            base_arn, _, alias_name = arn.rpartition(":")
            base = next((sm for sm in self.state_machines if sm.arn == base_arn), None)
            alias = base.aliases.get(alias_name) if base is not None else None
            if alias is None:
                raise
            routes = sorted(alias.routing_configuration, key=lambda r: -int(r.get("weight", 0)))
            return original_describe(self, routes[0]["stateMachineVersionArn"])

    def publish(self: Any, description: str | None) -> None:
        # an execution of a version is an execution of its state machine (describe/list/send_task_* look there)
        original_publish(self, description)
        self.latest_version.executions = self.executions
        self.latest_version._handle_name_input_idempotency = self._handle_name_input_idempotency

    models.StateMachineInstance.__deepcopy__ = _state_machine_deepcopy  # type: ignore[attr-defined]
    models.StepFunctionBackend.describe_state_machine = describe_state_machine  # type: ignore[method-assign]
    models.StateMachine.publish = publish  # type: ignore[method-assign]
    retrier_decl.time = types.SimpleNamespace(sleep=lambda seconds: None)  # type: ignore[assignment]
    try:
        yield
    finally:
        del models.StateMachineInstance.__deepcopy__  # type: ignore[attr-defined]
        models.StepFunctionBackend.describe_state_machine = original_describe  # type: ignore[method-assign]
        models.StateMachine.publish = original_publish  # type: ignore[method-assign]
        retrier_decl.time = original_time


@contextlib.contextmanager
def moto_stepfunctions() -> Iterator[LambdaRouter]:
    """``mock_aws`` with Step Functions executing ASL and Lambda invokes routed to the returned router."""
    from moto import mock_aws

    router = LambdaRouter()
    entry = (INVOKE_EVENT, router)
    BUILTIN_HANDLERS.append(entry)  # before any session exists: every boto3 session moto creates gets it
    try:
        with _patched_moto(), mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            yield router
    finally:
        BUILTIN_HANDLERS.remove(entry)


@contextlib.contextmanager
def route_event_targets(router: LambdaRouter) -> Iterator[list[dict[str, Any]]]:
    """Deliver EventBridge rules' Lambda targets in-process through ``router`` (moto 5.2.1 delivers only to
    logs, SQS, archives, buses and API destinations; a Lambda or Step Functions target raises
    NotImplementedError). moto still matches the rule's pattern and applies the target's InputTransformer —
    only the last hop, EventBridge → Lambda, is ours, as the Lambda invokes of the Step Functions harness are.
    Yields the delivered payloads."""
    from moto.events import models
    from moto.events.utils import EventTemplateParser
    from moto.utilities.arns import parse_arn

    original = models.Rule.send_to_targets
    delivered: list[dict[str, Any]] = []

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if not self.event_pattern.matches_event(original_event):
            return
        lambdas = [t for t in self.targets if parse_arn(t["Arn"]).service == "lambda"]
        for target in lambdas:
            transformer = target.get("InputTransformer", {})
            payload = EventTemplateParser.parse(
                input_template=transformer.get("InputTemplate"), input_paths_map=transformer.get("InputPathsMap", {}), event=original_event
            )
            short = target["Arn"].split(":function:")[-1].split(":")[0]
            handler = router.handlers.get(short, router.default)
            if handler is None:
                raise LookupError(f"no in-process route for Lambda function {short!r}")
            with router._lock:
                router.invocations.append((short, payload))
            delivered.append(payload)
            handler(payload, LambdaContext(function_name=short, invoked_function_arn=target["Arn"]))
        others = [t for t in self.targets if t not in lambdas]
        if others:
            saved, self.targets = self.targets, others
            try:
                original(self, original_event, transform_input)
            finally:
                self.targets = saved

    models.Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
    try:
        yield delivered
    finally:
        models.Rule.send_to_targets = original  # type: ignore[method-assign]


# -- waiting ----------------------------------------------------------------------------------------
def wait_for(condition: Callable[[], Any], what: str, *, timeout: float = DEADLINE_SECONDS, poll: float = 0.005) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def wait_execution(sfn: Any, execution_arn: str, *, timeout: float = DEADLINE_SECONDS) -> dict[str, Any]:
    """Poll ``describe_execution`` until the execution leaves RUNNING; return the description."""

    def finished() -> dict[str, Any] | None:
        description: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        return None if description["status"] == "RUNNING" else description

    return wait_for(finished, f"execution {execution_arn} to finish", timeout=timeout)  # type: ignore[no-any-return]


def execution_output(description: dict[str, Any]) -> Any:
    """The output of a finished execution (moto returns a top-level string output raw, not JSON-encoded)."""
    raw = description.get("output")
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


# -- a bare executor for conformance ----------------------------------------------------------------
class MotoExecutor:
    """The smallest ``Executor`` over Step Functions: one state machine per graph version, execution name =
    run id. The conformance test uses it so that only the compiler and the two interpreters are compared
    (the production executor, with versions and aliases, is tested on its own)."""

    ROLE = "arn:aws:iam::123456789012:role/conformance"

    synchronous = False

    def __init__(self, sfn: Any) -> None:
        self.sfn = sfn
        self.machines: dict[str, str] = {}
        self.executions: dict[str, str] = {}

    def deploy(self, ref: str, asl: dict[str, Any]) -> None:
        name = "conformance-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in ref)
        out = self.sfn.create_state_machine(name=name[:80], definition=json.dumps(asl), roleArn=self.ROLE)
        self.machines[ref] = out["stateMachineArn"]

    def start(self, run: Any, asl: dict[str, Any]) -> None:
        out = self.sfn.start_execution(stateMachineArn=self.machines[run.graph_ref], name=run.run_id, input=json.dumps(run.start_cursor))
        self.executions[run.run_id] = out["executionArn"]

    def execution_status(self, run: Any) -> str | None:
        arn = self.executions.get(run.run_id)
        return str(self.sfn.describe_execution(executionArn=arn)["status"]) if arn else None

    def stop(self, run: Any, *, cause: str = "cancelled") -> None:
        if run.run_id in self.executions:
            self.sfn.stop_execution(executionArn=self.executions[run.run_id], cause=cause)

    def send_token(self, run: Any, token: str, output: dict[str, Any]) -> None:
        self.sfn.send_task_success(taskToken=token, output=json.dumps(output))
