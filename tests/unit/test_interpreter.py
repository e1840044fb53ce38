"""The local ASL interpreter on hand-written state machines (no graphs involved)."""

import asyncio
import threading

import pytest

from stepwise.asl.interpreter import FakeClock, Interpreter
from stepwise.errors import TaskError

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


def task(next_=None, **extra):
    state = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": ARN, "Payload.$": "$"},
        "OutputPath": "$.Payload",
        **extra,
    }
    state.update({"Next": next_} if next_ else {"End": True})
    return state


def machine(states, start=None):
    return {"StartAt": start or next(iter(states)), "States": states}


def test_paths_parameters_and_result_handling():
    calls = []

    def fn(payload):
        calls.append(payload)
        return {"doubled": payload["x"] * 2}

    asl = machine(
        {
            "prep": {
                "Type": "Pass",
                "Parameters": {"x.$": "$.in.value", "const": 1, "ctx.$": "$$.Execution.Name"},
                "ResultPath": "$.prepared",
                "Next": "call",
            },
            "call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "InputPath": "$.prepared",
                "Parameters": {"FunctionName": ARN, "Payload": {"x.$": "$.x"}},
                "ResultSelector": {"value.$": "$.Payload.doubled"},
                "ResultPath": "$.result",
                "OutputPath": "$.result",
                "End": True,
            },
        }
    )
    result = Interpreter({"fn": fn}).execute(asl, {"in": {"value": 21}}, name="ex1")
    assert result.status == "SUCCEEDED" and result.output == {"value": 42}
    assert calls == [{"x": 21}]
    assert result.transitions == 2


def test_intrinsics():
    asl = machine(
        {
            "p": {
                "Type": "Pass",
                "Parameters": {
                    "greeting.$": "States.Format('hello {} #{}', $.name, $.n)",
                    "parsed.$": "States.StringToJson($.blob)",
                    "merged.$": "States.JsonMerge($.a, $.b, false)",
                    "length.$": "States.ArrayLength($.list)",
                    "sum.$": "States.MathAdd($.n, 5)",
                    "arr.$": "States.Array($.n, 'x')",
                },
                "End": True,
            }
        }
    )
    out = (
        Interpreter({}).execute(asl, {"name": "ada", "n": 2, "blob": '{"k": [1]}', "a": {"x": 1}, "b": {"y": 2}, "list": [1, 2, 3]}).output
    )
    assert out == {"greeting": "hello ada #2", "parsed": {"k": [1]}, "merged": {"x": 1, "y": 2}, "length": 3, "sum": 7, "arr": [2, "x"]}


def test_choice_rules():
    asl = machine(
        {
            "c": {
                "Type": "Choice",
                "Choices": [
                    {
                        "And": [{"Variable": "$.n", "NumericGreaterThan": 1}, {"Not": {"Variable": "$.s", "StringEquals": "no"}}],
                        "Next": "big",
                    },
                    {"Variable": "$.flag", "IsPresent": True, "Next": "flagged"},
                ],
                "Default": "small",
            },
            "big": {"Type": "Pass", "Result": "big", "End": True},
            "flagged": {"Type": "Pass", "Result": "flagged", "End": True},
            "small": {"Type": "Pass", "Result": "small", "End": True},
        }
    )
    run = Interpreter({}).execute
    assert run(asl, {"n": 5, "s": "yes"}).output == "big"
    assert run(asl, {"n": 5, "s": "no", "flag": 0}).output == "flagged"
    assert run(asl, {"n": 0, "s": "yes"}).output == "small"


def test_retry_backoff_with_injected_clock():
    attempts = []

    def flaky(payload):
        attempts.append(1)
        if len(attempts) < 4:
            raise RuntimeError("transient")
        return "ok"

    asl = machine({"t": task(Retry=[{"ErrorEquals": ["RuntimeError"], "IntervalSeconds": 1, "BackoffRate": 2.0, "MaxAttempts": 3}])})
    clock = FakeClock()
    result = Interpreter({"fn": flaky}, clock=clock).execute(asl, {})
    assert result.status == "SUCCEEDED" and result.output == "ok"
    assert clock.sleeps == [1.0, 2.0, 4.0]


def test_retry_max_delay_and_full_jitter_and_exhaustion():
    def broken(payload):
        raise ValueError("always")

    asl = machine(
        {
            "t": task(
                Retry=[
                    {
                        "ErrorEquals": ["States.ALL"],
                        "IntervalSeconds": 3,
                        "BackoffRate": 3.0,
                        "MaxAttempts": 3,
                        "MaxDelaySeconds": 10,
                        "JitterStrategy": "FULL",
                    }
                ]
            )
        }
    )
    clock = FakeClock()
    result = Interpreter({"fn": broken}, clock=clock).execute(asl, {})
    assert result.status == "FAILED" and result.error == "ValueError" and "always" in result.cause
    assert len(clock.sleeps) == 3
    assert all(0 <= s <= cap for s, cap in zip(clock.sleeps, [3, 9, 10], strict=True))


def test_catch_routes_errors_with_result_path():
    def broken(payload):
        raise KeyError("nope")

    asl = machine(
        {
            "t": task("after", Catch=[{"ErrorEquals": ["KeyError"], "ResultPath": "$.error", "Next": "handler"}]),
            "after": {"Type": "Pass", "End": True},
            "handler": {"Type": "Pass", "End": True},
        }
    )
    out = Interpreter({"fn": broken}).execute(asl, {"keep": 1}).output
    assert out["keep"] == 1 and out["error"]["Error"] == "KeyError"


def test_named_errors_and_fail_state():
    class NodeError(TaskError):
        error_name = "Stepwise.NodeError"

    def broken(payload):
        raise NodeError("bad node")

    asl = machine(
        {
            "t": task("x", Catch=[{"ErrorEquals": ["Stepwise.NodeError"], "Next": "fail"}]),
            "x": {"Type": "Succeed"},
            "fail": {"Type": "Fail", "Error": "Custom.Failed", "Cause": "because"},
        }
    )
    result = Interpreter({"fn": broken}).execute(asl, {})
    assert (result.status, result.error, result.cause) == ("FAILED", "Custom.Failed", "because")


def test_parallel_runs_branches_concurrently_and_keeps_order():
    barrier = threading.Barrier(3, timeout=5)

    def fn(payload):
        barrier.wait()  # all three branches must be in flight at once, or this times out
        return payload["i"]

    branch = lambda i: machine({f"b{i}": {**task(), "Parameters": {"FunctionName": ARN, "Payload": {"i": i}}}})  # noqa: E731
    asl = machine({"par": {"Type": "Parallel", "Branches": [branch(i) for i in range(3)], "End": True}})
    assert Interpreter({"fn": fn}).execute(asl, {}).output == [0, 1, 2]


def _fanout(width: int) -> dict:
    branch = lambda i: machine({f"b{i}": {**task(), "Parameters": {"FunctionName": ARN, "Payload": {"i": i}}}})  # noqa: E731
    return machine({"par": {"Type": "Parallel", "Branches": [branch(i) for i in range(width)], "End": True}})


def test_async_branches_wait_together_on_one_thread():
    """200 branches that each await must all be waiting at once (an event that only the last one sets), on the
    caller's thread: waiting branches hold no thread each. Results keep branch order."""
    width = 200
    threads: set[str] = set()
    state = {"waiting": 0}
    everyone: list[asyncio.Event] = []

    async def afn(payload):
        if not everyone:
            everyone.append(asyncio.Event())
        threads.add(threading.current_thread().name)
        state["waiting"] += 1
        if state["waiting"] == width:
            everyone[0].set()
        await asyncio.wait_for(everyone[0].wait(), timeout=10)
        return payload["i"]

    result = Interpreter({}, async_functions={"fn": afn}).execute(_fanout(width), {})
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == list(range(width))
    assert threads == {threading.current_thread().name}


def test_sequential_path_calls_the_plain_function_on_the_callers_thread():
    seen = []

    def fn(payload):
        seen.append(threading.current_thread().name)
        return payload

    asl = machine({"a": {**task(), "Parameters": {"FunctionName": ARN, "Payload": {"x": 1}}, "End": True}})
    assert Interpreter({"fn": fn}).execute(asl, {}).output == {"x": 1}
    assert seen == [threading.current_thread().name]


def test_a_failing_branch_fails_the_parallel_after_every_branch_settled():
    done = []

    async def afn(payload):
        await asyncio.sleep(0)
        if payload["i"] == 1:
            raise RuntimeError("branch one broke")
        done.append(payload["i"])
        return payload["i"]

    result = Interpreter({}, async_functions={"fn": afn}).execute(_fanout(4), {})
    assert (result.status, result.error) == ("FAILED", "RuntimeError")
    assert sorted(done) == [0, 2, 3]


def test_map_with_item_selector_and_max_concurrency():
    live, peak = [0], [0]
    lock = threading.Lock()

    def fn(payload):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        with lock:
            live[0] -= 1
        return payload["value"] * 10 + payload["index"]

    asl = machine(
        {
            "m": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 2,
                "ItemSelector": {"value.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", "base.$": "$.base"},
                "ItemProcessor": machine({"w": {**task(), "Parameters": {"FunctionName": ARN, "Payload.$": "$"}}}),
                "ResultPath": "$.results",
                "End": True,
            }
        }
    )
    out = Interpreter({"fn": fn}).execute(asl, {"items": [1, 2, 3, 4], "base": 0}).output
    assert out["results"] == [10, 21, 32, 43]
    assert peak[0] <= 2


def test_wait_uses_the_injected_clock():
    clock = FakeClock()
    asl = machine({"w": {"Type": "Wait", "Seconds": 30, "Next": "p"}, "p": {"Type": "Pass", "End": True}})
    assert Interpreter({}, clock=clock).execute(asl, {"a": 1}).output == {"a": 1}
    assert clock.sleeps == [30.0]


def test_task_token_suspends_then_replays_with_the_same_token():
    seen_tokens = []

    def fn(payload):
        seen_tokens.append(payload["token"])
        return None

    class Tokens:
        def __init__(self):
            self.outputs = {}

        def token_output(self, token):
            return self.outputs.get(token)

    asl = machine(
        {
            "ask": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": ARN, "Payload": {"token.$": "$$.Task.Token"}},
                "ResultPath": "$.answer",
                "End": True,
            },
        }
    )
    tokens = Tokens()
    first = Interpreter({"fn": fn}, tokens=tokens).execute(asl, {"q": 1}, name="run-1")
    assert first.status == "WAITING"
    tokens.outputs[seen_tokens[0]] = {"yes": True}
    second = Interpreter({"fn": fn}, tokens=tokens).execute(asl, {"q": 1}, name="run-1")
    assert seen_tokens[0] == seen_tokens[1]
    assert second.status == "SUCCEEDED" and second.output == {"q": 1, "answer": {"yes": True}}


def test_unknown_function_and_bad_path_fail_clearly():
    assert Interpreter({}).execute(machine({"t": task()}), {}).error == "Lambda.ResourceNotFoundException"
    bad = machine({"p": {"Type": "Pass", "InputPath": "$.missing", "End": True}})
    result = Interpreter({}).execute(bad, {})
    assert result.error == "States.Runtime" and "$.missing" in result.cause


@pytest.mark.parametrize("states", [{"c": {"Type": "Choice", "Choices": [{"Variable": "$.x", "StringEquals": "a", "Next": "c"}]}}])
def test_no_choice_matched(states):
    assert Interpreter({}).execute(machine(states), {"x": "b"}).error == "States.NoChoiceMatched"


def test_a_route_jump_or_hand_over_carries_no_stack_trace_but_a_failure_does():
    """Control flow (RouteJump, HandoverError) is caught every loop turn or every few thousand events: the
    interpreter skips formatting its stack (~1 ms in Python 3.11, one long-loop step's worth 5x over)."""
    import json

    from stepwise.runtime.step import HandoverError, RouteJump

    def catch_all(raise_: Exception) -> dict:
        def fn(payload):
            raise raise_

        asl = machine(
            {
                "t": task("after", Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "after"}]),
                "after": {"Type": "Pass", "End": True},
            }
        )
        return json.loads(Interpreter({"fn": fn}).execute(asl, {}).output["error"]["Cause"])

    assert catch_all(RouteJump("Stepwise.Route.0", {"seq": 3}))["stackTrace"] == []
    assert catch_all(HandoverError("continues"))["stackTrace"] == []
    assert catch_all(KeyError("nope"))["stackTrace"]  # a real failure keeps its trace
