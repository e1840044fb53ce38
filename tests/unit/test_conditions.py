import pytest

from stepwise.graph.conditions import ConditionError, evaluate, parse


@pytest.mark.parametrize(
    ("expr", "state", "expected"),
    [
        ("state.type == 'A'", {"type": "A"}, True),
        ("state.type == 'A'", {"type": "B"}, False),
        ("len(state.items) > 2", {"items": [1, 2, 3]}, True),
        ("len(state.items) > 2", {"items": [1]}, False),
        ("len(state.missing) == 0", {}, True),
        ("state.a and not state.b", {"a": 1, "b": 0}, True),
        ("state.a or state.b", {"a": 0, "b": 0}, False),
        ("'x' in state.tags", {"tags": ["x", "y"]}, True),
        ("'z' not in state.tags", {"tags": ["x"]}, True),
        ("state.kind in ['a', 'b']", {"kind": "b"}, True),
        ("state.messages[-1].role == 'tool'", {"messages": [{"role": "user"}, {"role": "tool"}]}, True),
        ("state['score'] >= 0.8", {"score": 0.9}, True),
        ("1 < state.n <= 3", {"n": 3}, True),
        ("state.deep.missing.key == None", {"deep": {}}, True),
        ("state.n > 2", {"n": "text"}, False),  # type mismatch is false, not a crash
        ("state.done is True", {"done": True}, True),
    ],
)
def test_evaluates_the_subset(expr, state, expected):
    assert evaluate(expr, state) is expected


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("__import__('os').system('id')", "only len(x) is allowed"),
        ("state.__class__", "private attribute"),
        ("open('/etc/passwd')", "only len(x) is allowed"),
        ("os.environ", "only 'state' can be read"),
        ("[x for x in state.items]", "outside the condition subset"),
        ("lambda: 1", "outside the condition subset"),
        ("state.a + 1 > 2", "outside the condition subset"),
        ("state.type ==", "cannot parse"),
        ("state.items[state.i]", "index must be a literal"),
    ],
)
def test_rejects_anything_outside_the_subset(expr, fragment):
    with pytest.raises(ConditionError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse(expr)
