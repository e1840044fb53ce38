"""The graph language: long and short YAML forms, the builder, and errors that name file, node and fix."""

from pathlib import Path

import pytest

from stepwise.graph.builder import END, Graph
from stepwise.graph.errors import GraphError
from stepwise.graph.loader import load_file, load_text


def _error(text: str) -> str:
    with pytest.raises(GraphError) as info:
        load_text(text, source="g.yaml")
    return str(info.value)


GOOD = """
name: support-router
state: {trail: append}
graph:
  nodes:
    evaluate: {kind: function, fn: "statemachines.examples.nodes:evaluate"}
    handle_billing: {kind: function, fn: "statemachines.examples.nodes:handle_billing"}
    default: {kind: function, fn: "statemachines.examples.nodes:default"}
  conditional_edges:
    - from: evaluate
      conditions:
        - {if: "state.type == 'A'", then: handle_billing}
        - {else: default}
  entry: evaluate
"""


def test_long_form_loads():
    spec = load_text(GOOD)
    assert spec.entry == "evaluate"
    assert spec.reducer_of("trail") == "append"
    assert spec.reducer_of("other") == "replace"
    assert spec.graph.conditional_edges[0].conditions[1].target == "default"


def test_short_form_chains_nodes_from_module():
    spec = load_text("name: s\nmodule: statemachines.examples.nodes\nnodes: [fetch, clean, summarize]\n")
    assert spec.graph.nodes["clean"].fn == "statemachines.examples.nodes:clean"
    assert [(e.source, e.target) for e in spec.graph.edges] == [("fetch", "clean"), ("clean", "summarize")]
    assert spec.entry == "fetch"


def test_builder_produces_the_same_spec_as_yaml():
    built = (
        Graph("support-router", state={"trail": "append"})
        .function("evaluate", "statemachines.examples.nodes:evaluate")
        .function("handle_billing", "statemachines.examples.nodes:handle_billing")
        .function("default", "statemachines.examples.nodes:default")
        .when("evaluate", "state.type == 'A'", "handle_billing")
        .otherwise("evaluate", "default")
        .build()
    )
    assert built.ref == load_text(GOOD).ref
    assert built.canonical() == load_text(GOOD).canonical()


def test_builder_accepts_function_objects_and_validates():
    from statemachines.examples import nodes

    spec = Graph("b").function("fetch", nodes.fetch).function("clean", nodes.clean).sequence("fetch", "clean").build()
    assert spec.graph.nodes["fetch"].fn == "statemachines.examples.nodes:fetch"
    with pytest.raises(GraphError, match="unreachable"):
        Graph("b").function("a", nodes.fetch).function("b", nodes.clean).build()
    with pytest.raises(ValueError, match="module-level"):
        Graph("b").function("a", lambda s: s)
    assert END == "__end__"


def test_ref_changes_when_the_graph_changes():
    assert load_text(GOOD).ref != load_text(GOOD.replace("trail: append", "trail: merge")).ref


def test_malformed_yaml_names_file_and_line():
    message = _error("name: x\ngraph:\n  nodes: {a: [\n")
    assert message.startswith("g.yaml:")
    assert "malformed YAML" in message and "Fix:" in message


def test_seed_shorthand_edge_is_explained():
    text = GOOD.replace("  entry: evaluate", "  edges:\n    - from: evaluate, to: default\n  entry: evaluate")
    message = _error(text)
    assert "seed's shorthand" in message
    assert "`- {from: evaluate, to: default}`" in message


def test_unknown_node_in_edge():
    message = _error(GOOD.replace("then: handle_billing", "then: handle_biling"))
    assert "node 'evaluate'" in message and "unknown node 'handle_biling'" in message
    assert "define node 'handle_biling'" in message


def test_unreachable_node():
    text = GOOD.replace("    default:", '    orphan: {kind: function, fn: "statemachines.examples.nodes:default"}\n    default:')
    message = _error(text)
    assert "node 'orphan'" in message and "unreachable" in message and "add an edge into 'orphan'" in message


def test_cycle_without_exit():
    message = _error(
        """
name: loop
graph:
  nodes:
    a: {fn: "m:a"}
    b: {fn: "m:b"}
  edges:
    - {from: a, to: b}
    - {from: b, to: a}
  entry: a
"""
    )
    assert "cycle a -> b has no way out" in message
    assert "conditional edge" in message


def test_condition_outside_subset():
    message = _error(GOOD.replace("state.type == 'A'", "__import__('os').getcwd()"))
    assert "node 'evaluate'" in message and "only len(x) is allowed" in message


def test_missing_fn():
    message = _error(GOOD.replace('{kind: function, fn: "statemachines.examples.nodes:default"}', "{kind: function}"))
    assert "node 'default'" in message and "has no `fn`" in message and "def default(state) -> dict" in message


def test_parallel_branches_writing_one_replace_channel():
    message = _error(
        """
name: p
graph:
  nodes:
    split: {fn: "m:s"}
    a: {fn: "m:a", writes: [result]}
    b: {fn: "m:b", writes: [result]}
    join: {fn: "m:j"}
  parallel_nodes:
    - {from: split, to: [a, b]}
    - {from: [a, b], to: join}
  entry: split
"""
    )
    assert "both write channel 'result'" in message and "merging reducer" in message


def test_missing_entry():
    message = _error(GOOD.replace("  entry: evaluate\n", ""))
    assert "no entry node" in message and "add `entry: evaluate`" in message


def test_unknown_entry_and_unknown_key():
    assert "entry 'nope' is not a node" in _error(GOOD.replace("entry: evaluate", "entry: nope"))
    message = _error(GOOD.replace("kind: function, fn", "kind: function, fun: x, fn"))
    assert "unknown key `fun`" in message and "node 'evaluate'" in message


def test_missing_else_and_unknown_reducer():
    assert "no `else:` fallback" in _error(GOOD.replace("        - {else: default}\n", "        - {if: 'state.x', then: default}\n"))
    assert "unknown reducer 'concat'" in _error(GOOD.replace("trail: append", "trail: concat"))


def test_import_check_is_opt_in(tmp_path: Path):
    path = tmp_path / "g.yaml"
    path.write_text(GOOD.replace("statemachines.examples.nodes:default", "no_such_module:default"))
    load_file(path)  # structure is fine
    with pytest.raises(GraphError, match="cannot import 'no_such_module'"):
        load_file(path, check_imports=True)


def test_every_example_is_valid(examples: Path):
    files = sorted(examples.glob("*.yaml"))
    assert len(files) >= 7
    for path in files:
        load_file(path, check_imports=True)


def test_agent_config_is_checked_at_load():
    text = """
name: a
graph:
  nodes:
    think: {kind: agent, config: {loop: fuse, max_iteration: 3}}
  entry: think
"""
    message = _error(text)
    assert "node 'think'" in message
    assert "unknown config key `max_iteration`" in message and "max_iterations" in message
    assert "config.loop:" in message and "'graph' or 'fused'" in message
