"""The AWS executor (``StepFunctionsExecutor``): compiled ASL deployed to Step Functions, runs started there, human nodes resumed.

One state machine per graph *name* (``<name_prefix>-<name>``). Registering a version (``deploy``) puts
that version's ASL into the state machine, publishes a Step Functions version whose description is the
graph ref (``name@hash``), and moves the alias ``live`` to it. A run starts on ``live`` when ``live``
runs the run's graph version, else on that version's own ARN, so an older version never executes a
newer definition. Execution name = run id, so starting twice cannot run a graph twice.

The deployed definition is the very ASL the local engine interprets, with the step's ARN bound to the
deployed ``step`` Lambda (``Settings.step_function_arn``). Run status is not polled from Step Functions:
the step writes it into the run store, exactly as it does locally.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from functools import lru_cache
from typing import Any

from stepwise import awsclients
from stepwise.errors import asl_error_name
from stepwise.runtime.services import Services
from stepwise.settings import Settings
from stepwise.state.ports import RunRecord

ALIAS = "live"
#: Execution names: the run id, or ``<run>--c<n>`` for continuation n, ``<run>--r<n>`` for redrive n.
_EXECUTION_NAME = re.compile(r"^(?P<run>.+?)(?:--[cr]\d+)?$")
_ARN = re.compile(r"^arn:(?P<partition>[\w-]+):lambda:(?P<region>[\w-]+):(?P<account>\d{12}):function:(?P<name>[\w-]+)(:[\w$-]+)?$")


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def run_of_execution(name: str) -> str:
    """The run id of the execution named ``name`` (a continuation's or a redrive's name ends ``--c<n>``/``--r<n>``)."""
    found = _EXECUTION_NAME.match(name)
    return found["run"] if found else name


def bind_step_arn(asl: dict[str, Any], step_arn: str) -> dict[str, Any]:
    """Point every ``lambda:invoke`` Task (also inside Parallel branches and Map processors) at ``step_arn``.

    Mutates and returns ``asl``: the client stores the dict it passed to ``deploy``, so the registry
    holds exactly the definition that was deployed.
    """

    def visit(states: dict[str, Any]) -> None:
        for state in states.values():
            params = state.get("Parameters")
            if state.get("Type") == "Task" and isinstance(params, dict) and "FunctionName" in params:
                params["FunctionName"] = step_arn
            for branch in state.get("Branches", []):
                visit(branch["States"])
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if processor:
                visit(processor["States"])

    visit(asl["States"])
    return asl


@lru_cache(maxsize=64)
def _named_error(name: str) -> type[Exception]:
    return type(name, (Exception,), {"__module__": "stepwise.errors", "__qualname__": name})


def task_error(exc: BaseException) -> BaseException:
    """The exception a Lambda handler should raise so the Task fails with the ASL error we compiled for.

    Lambda reports ``errorType = type(exc).__name__``; Step Functions matches Retry/Catch on it. Our
    task errors (``stepwise.errors.TaskError``) carry their ASL name in ``error_name`` (``Stepwise.NodeError``, ``Stepwise.StateConflict``),
    so they are re-raised as an exception class of exactly that name, with the same message.
    """
    name = asl_error_name(exc)
    if type(exc).__name__ == name:
        return exc
    return _named_error(name)(str(exc))


class StepFunctionsExecutor:
    """Runs graphs on AWS Step Functions: one state machine per graph name, versions published, ``live`` alias."""

    synchronous = False

    def __init__(self, services: Services, settings: Settings, *, client: Any = None) -> None:
        match = _ARN.match(settings.step_function_arn)
        if match is None:
            raise ValueError(
                f"STEPWISE_STEP_FUNCTION_ARN={settings.step_function_arn!r} is not a Lambda function ARN "
                "(arn:aws:lambda:REGION:ACCOUNT:function:NAME); set it to the deployed step function"
            )
        self.services = services
        self.settings = settings
        self.step_arn = settings.step_function_arn
        self.sfn = client or awsclients.client("stepfunctions")
        self._arn_base = f"arn:{match['partition']}:states:{match['region']}:{match['account']}"
        self._version_refs: dict[str, str] = {}  # version ARN -> graph ref (versions are immutable)
        self._ref_versions: dict[str, str] = {}  # graph ref -> version ARN
        self._lock = threading.Lock()
        services.handover = self.handover  # the step starts continuation executions through this executor

    # -- names --------------------------------------------------------------------------------
    def machine_name(self, ref: str) -> str:
        graph = ref.split("@", 1)[0]
        name = re.sub(r"[^A-Za-z0-9_-]", "-", f"{self.settings.name_prefix}-{graph}")
        if len(name) > 80:
            name = name[:71] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
        return name

    def machine_arn(self, ref: str) -> str:
        return f"{self._arn_base}:stateMachine:{self.machine_name(ref)}"

    def alias_arn(self, ref: str) -> str:
        return f"{self.machine_arn(ref)}:{ALIAS}"

    def execution_arn(self, ref: str, run_id: str) -> str:
        return f"{self._arn_base}:execution:{self.machine_name(ref)}:{run_id}"

    # -- Executor -----------------------------------------------------------------------------
    def deploy(self, ref: str, asl: dict[str, Any]) -> None:
        """Create or update the graph's state machine, publish this version, move ``live`` to it."""
        version = self._publish(ref, bind_step_arn(asl, self.step_arn))
        routing = [{"stateMachineVersionArn": version, "weight": 100}]
        try:
            self.sfn.update_state_machine_alias(stateMachineAliasArn=self.alias_arn(ref), routingConfiguration=routing)
        except Exception as exc:
            if _code(exc) != "ResourceNotFound":
                raise
            self.sfn.create_state_machine_alias(name=ALIAS, routingConfiguration=routing, description="the latest registered version")

    def start(self, run: RunRecord, asl: dict[str, Any]) -> None:
        """Start the run's execution (asynchronous: the step writes the run's status to the run store).

        Its name is the run id, or the start cursor's ``execution`` for a continuation or a redrive
        (``<run>--c<n>``, ``<run>--r<n>``): a re-sent start of the same one cannot run it twice."""
        self._start(run.run_id, run.graph_ref, run.start_cursor, asl)
        return None

    def handover(self, run_id: str, cursor: dict[str, Any], number: int) -> None:
        """Called by the step (in the step Lambda) when the execution has appended ``continue_after`` events:
        start continuation execution ``number`` at the cursor's ``start_at``, on the same graph version."""
        run = self.services.runs.get(run_id)
        if run is None:
            raise LookupError(f"no run {run_id!r} to continue")
        found = self.services.registry.get(run.graph_ref)
        if found is None:
            raise LookupError(f"graph version {run.graph_ref!r} is not registered")
        self._start(run_id, run.graph_ref, cursor, found[1])

    def _start(self, run_id: str, ref: str, cursor: dict[str, Any], asl: dict[str, Any]) -> None:
        target = self._target(ref, asl)
        name = str(cursor.get("execution") or run_id)
        arn = self.execution_arn(ref, name)
        self.services.runs.update(run_id, execution_arn=arn, start_cursor=cursor)  # before the step can touch the record
        try:
            self.sfn.start_execution(stateMachineArn=target, name=name, input=json.dumps(cursor))
        except Exception as exc:
            if _code(exc) != "ExecutionAlreadyExists":
                raise
            # the execution exists (a re-sent start): Step Functions already runs or ran it

    def send_token(self, run: RunRecord, token: str, output: dict[str, Any]) -> None:
        """Complete the human node's task: the execution continues with ``output`` (the next cursor)."""
        self.sfn.send_task_success(taskToken=token, output=json.dumps(output))
        return None

    def execution_status(self, run: RunRecord) -> str | None:
        """The status of the run's current execution (``DescribeExecution``); None if it does not exist (yet)."""
        if not run.execution_arn:
            return None
        try:
            return str(self.sfn.describe_execution(executionArn=run.execution_arn)["status"])
        except Exception as exc:
            if _code(exc) in ("ExecutionDoesNotExist", "ExecutionNotFound"):
                return None
            raise

    def stop(self, run: RunRecord, *, cause: str = "cancelled") -> None:
        """Stop the run's execution (for cancel); a finished execution is left as it is."""
        arn = run.execution_arn or self.execution_arn(run.graph_ref, run.run_id)
        try:
            self.sfn.stop_execution(executionArn=arn, error="Stepwise.Cancelled", cause=cause)
        except Exception as exc:
            if _code(exc) not in ("ExecutionDoesNotExist", "ExecutionNotFound"):
                raise

    # -- versions -----------------------------------------------------------------------------
    def _publish(self, ref: str, asl: dict[str, Any], *, attempts: int = 3) -> str:
        definition = json.dumps(asl, separators=(",", ":"), sort_keys=True)
        for _ in range(attempts):
            try:
                out = self.sfn.update_state_machine(
                    stateMachineArn=self.machine_arn(ref),
                    definition=definition,
                    roleArn=self.settings.state_machine_role_arn,
                    publish=True,
                    versionDescription=ref,
                )
            except Exception as exc:
                if _code(exc) != "StateMachineDoesNotExist":
                    raise
                try:
                    out = self.sfn.create_state_machine(
                        name=self.machine_name(ref),
                        definition=definition,
                        roleArn=self.settings.state_machine_role_arn,
                        type="STANDARD",
                        publish=True,
                        versionDescription=ref,
                        tracingConfiguration={"enabled": True},
                    )
                except Exception as create_exc:
                    if _code(create_exc) == "StateMachineAlreadyExists":
                        continue  # another deployer created it first: update it instead
                    raise
            version = str(out["stateMachineVersionArn"])
            self._remember(ref, version)
            return version
        raise RuntimeError(f"could not create or update the state machine {self.machine_name(ref)!r}")

    def _remember(self, ref: str, version: str) -> None:
        with self._lock:
            self._version_refs[version] = ref
            self._ref_versions[ref] = version

    def _ref_of(self, version: str) -> str | None:
        with self._lock:
            known = self._version_refs.get(version)
        if known is not None:
            return known
        try:
            description = self.sfn.describe_state_machine(stateMachineArn=version).get("description")
        except Exception as exc:
            if _code(exc) in ("StateMachineDoesNotExist", "ResourceNotFound"):
                return None
            raise
        if description:
            self._remember(str(description), version)
        return str(description) if description else None

    def _target(self, ref: str, asl: dict[str, Any]) -> str:
        """The alias when it runs ``ref``; else ``ref``'s published version; else publish it (alias unmoved)."""
        try:
            alias = self.sfn.describe_state_machine_alias(stateMachineAliasArn=self.alias_arn(ref))
            live = max(alias["routingConfiguration"], key=lambda r: int(r["weight"]))["stateMachineVersionArn"]
        except Exception as exc:
            if _code(exc) not in ("ResourceNotFound", "StateMachineDoesNotExist"):
                raise
            live = None
        if live is not None and self._ref_of(live) == ref:
            return self.alias_arn(ref)
        with self._lock:
            known = self._ref_versions.get(ref)
        if known is not None:
            return known
        if live is not None:  # versions are numbered: look back from the live one
            base, _, number = str(live).rpartition(":")
            for n in range(int(number) - 1, 0, -1):
                if self._ref_of(f"{base}:{n}") == ref:
                    return f"{base}:{n}"
        return self._publish(ref, bind_step_arn(asl, self.step_arn))
