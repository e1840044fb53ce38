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
    assert "common shorthand" in message
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


# -- the seed's parallel form -------------------------------------------------------------------------
SEED_PARALLEL = """
name: seed-parallel
state: {findings: merge, trail: append}
graph:
  nodes:
    split:  {fn: "statemachines.examples.nodes:split"}
    task_a: {fn: "statemachines.examples.nodes:search_web"}
    task_b: {fn: "statemachines.examples.nodes:search_docs"}
    task_c: {fn: "statemachines.examples.nodes:search_code"}
    join:   {fn: "statemachines.examples.nodes:merge_results"}
  edges:
    - {from: split, to: [task_a, task_b, task_c]}
    - {from: [task_a, task_b, task_c], to: join}
  parallel_nodes: [task_a, task_b, task_c]
  entry: split
"""

LIST_OF_EDGES = """
name: seed-parallel
state: {findings: merge, trail: append}
graph:
  nodes:
    split:  {fn: "statemachines.examples.nodes:split"}
    task_a: {fn: "statemachines.examples.nodes:search_web"}
    task_b: {fn: "statemachines.examples.nodes:search_docs"}
    task_c: {fn: "statemachines.examples.nodes:search_code"}
    join:   {fn: "statemachines.examples.nodes:merge_results"}
  parallel_nodes:
    - {from: split, to: [task_a, task_b, task_c]}
    - {from: [task_a, task_b, task_c], to: join}
  entry: split
"""


def test_seed_parallel_form_is_the_list_of_edges_form():
    seed, edges = load_text(SEED_PARALLEL), load_text(LIST_OF_EDGES)
    assert seed.canonical() == edges.canonical() and seed.ref == edges.ref  # one graph, one version id
    assert [(p.source, p.target) for p in seed.graph.parallel_nodes] == [
        ("split", ["task_a", "task_b", "task_c"]),
        (["task_a", "task_b", "task_c"], "join"),
    ]


def test_seed_parallel_form_runs():
    from stepwise.client import Stepwise

    result = Stepwise.in_memory().run(load_text(SEED_PARALLEL), {"query": "q"})
    assert result.status == "succeeded", result.error
    assert result.state["trail"] == ["split", "search_web", "search_docs", "search_code", "merge_results"]
    assert result.state["report"] == "code: 5 code references to q; docs: 2 internal docs about q; web: 3 articles about q"


def test_seed_parallel_form_runs_inside_a_bounded_cycle():
    from tests.support.graphs import SEED_PARALLEL_LOOP, SEED_PARALLEL_LOOP_TRAIL

    from stepwise.client import Stepwise

    client = Stepwise.in_memory()
    result = client.run(load_text(SEED_PARALLEL_LOOP), {})
    assert result.status == "succeeded", result.error
    assert result.state["trail"] == SEED_PARALLEL_LOOP_TRAIL and result.state["round"] == 3
    # the same graph with a lower bound stops at the bound, naming it
    over = client.run(load_text(SEED_PARALLEL_LOOP.replace("max_iterations: 3", "max_iterations: 2")), {})
    assert over.status == "failed" and "max_iterations=2" in str(over.error)


def test_parallel_nodes_names_group_plain_edges():
    text = SEED_PARALLEL.replace(
        "    - {from: split, to: [task_a, task_b, task_c]}\n    - {from: [task_a, task_b, task_c], to: join}\n",
        "".join(f"    - {{from: split, to: {t}}}\n    - {{from: {t}, to: join}}\n" for t in ("task_a", "task_b", "task_c")),
    )
    assert load_text(text).canonical() == load_text(LIST_OF_EDGES).canonical()


def test_parallel_nodes_names_must_be_started_by_a_fan_out():
    message = _error(SEED_PARALLEL.replace("    - {from: split, to: [task_a, task_b, task_c]}\n", "    - {from: split, to: task_a}\n"))
    assert "g.yaml:14: node 'task_b': 'task_b' is listed in parallel_nodes but no fan-out starts it" in message
    assert "`- {from: SPLIT, to: [task_a, task_b, task_c]}`" in message
    message = _error(SEED_PARALLEL.replace("parallel_nodes: [task_a, task_b, task_c]", "parallel_nodes: [task_a, task_b, tsak_c]"))
    assert "parallel_nodes names unknown node 'tsak_c'" in message and "did you mean 'task_c'?" in message


# -- file:line and root causes --------------------------------------------------------------------------
def test_validation_problems_name_their_line():
    message = _error(GOOD.replace("then: handle_billing", "then: handle_biling"))
    assert message.startswith("g.yaml:12: node 'evaluate': a condition points to unknown node 'handle_biling'")
    message = _error(GOOD.replace('{kind: function, fn: "statemachines.examples.nodes:default"}', "{kind: function}"))
    assert message.startswith("g.yaml:8: node 'default': function node has no `fn`")
    assert _error(GOOD.replace("entry: evaluate", "entry: evaluat")).startswith("g.yaml:14: entry 'evaluat' is not a node")
    assert _error(GOOD.replace("kind: function, fn", "kind: function, fun: x, fn")).startswith("g.yaml:6: node 'evaluate': unknown key")
    # the short form's paths are the file's, not the normalised ones
    short = "name: s\nmodule: statemachines.examples.nodes\nnodes: [fetch, clean]\nedges:\n  - {from: fetch, to: clena}\n"
    assert _error(short).startswith("g.yaml:5: node 'fetch': an edge points to unknown node 'clena'")


def test_line_numbers_from_a_file(tmp_path: Path):
    path = tmp_path / "flow.yaml"
    path.write_text(SEED_PARALLEL.replace("to: join}", "to: jion}"))
    with pytest.raises(GraphError) as info:
        load_file(path)
    assert str(info.value).startswith(f"{path}:13: a parallel edge points to unknown node 'jion'. Fix: did you mean 'join'?")


def test_one_bad_edge_name_is_one_error():
    text = """
name: chain
graph:
  nodes:
    a: {fn: "m:a"}
    b: {fn: "m:b"}
    c: {fn: "m:c"}
    d: {fn: "m:d"}
    e: {fn: "m:e"}
  edges:
    - {from: a, to: bb}
    - {from: b, to: c}
    - {from: c, to: d}
    - {from: d, to: e}
  entry: a
"""
    with pytest.raises(GraphError) as info:
        load_text(text, source="g.yaml")
    assert len(info.value.problems) == 1
    assert str(info.value) == (
        "g.yaml:11: node 'a': an edge points to unknown node 'bb'. Fix: did you mean 'b'? Otherwise define node 'bb' (nodes: a, b, c, d, e)"
    )


def test_an_orphaned_chain_is_one_problem_at_its_head():
    text = GOOD.replace(
        "    default:",
        '    orphan: {fn: "statemachines.examples.nodes:default"}\n    orphan2: {fn: "statemachines.examples.nodes:default"}\n    default:',
    ).replace("  entry: evaluate", "  edges:\n    - {from: orphan, to: orphan2}\n  entry: evaluate")
    with pytest.raises(GraphError) as info:
        load_text(text)
    assert [(p.node, p.message) for p in info.value.problems] == [
        ("orphan", "node is unreachable from the entry (and so are orphan2, which only it leads to)")
    ]


# -- did you mean ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("node", "suggested"),
    [
        ("max_iteration: 3", "graph.nodes.think.max_iterations"),  # a typo
        ("reflect: true", "graph.nodes.think.config.reflect"),  # a config key written on the node
        ("config: {max_iters: 3}", "graph.nodes.think.config.max_iterations"),  # a typo under config
        ("config: {tools: [calculator]}", "graph.nodes.think.tools"),  # a node key written under config
        ("retry: {max_attempt: 2}", "graph.nodes.think.retry.max_attempts"),
    ],
)
def test_unknown_keys_suggest_the_nearest_valid_path(node: str, suggested: str):
    message = _error(f"name: a\ngraph:\n  nodes:\n    think: {{kind: agent, {node}}}\n  entry: think\n")
    assert f"did you mean `{suggested}`?" in message and message.startswith("g.yaml:4: node 'think': unknown")


def test_a_graph_key_at_the_top_suggests_its_place():
    message = _error(GOOD.replace("name: support-router", "name: support-router\nmax_iterations: 5"))
    assert message.startswith("g.yaml:3: unknown key `max_iterations`") and "did you mean `graph.max_iterations`?" in message
    message = _error(GOOD.replace("        - {else: default}", "        - {els: default}"))
    assert "did you mean `graph.conditional_edges.0.conditions.1.else`?" in message


def test_unknown_keys_in_memory_and_answer_schemas_suggest_too():
    message = _error("name: a\ngraph:\n  nodes:\n    think: {kind: agent, memory: {top_kk: 3}}\n  entry: think\n")
    assert "did you mean `graph.nodes.think.memory.top_k`?" in message
    message = _error("name: a\ngraph:\n  nodes:\n    ask: {kind: human, input: {decision: {enums: [yes, no]}}}\n  entry: ask\n")
    assert "did you mean `graph.nodes.ask.input.decision.enum`?" in message


def test_answer_enum_words_stay_words():
    spec = load_text("name: a\ngraph:\n  nodes:\n    ask: {kind: human, input: {d: {enum: [yes, no, On, true, 3]}}}\n  entry: ask\n")
    answer = spec.graph.nodes["ask"].input
    assert answer is not None and answer["d"].enum == ["yes", "no", "On", True, 3]


def test_an_answer_without_a_schema_must_set_what_the_conditions_read():
    from stepwise.graph.answers import answer_problems, expected_keys

    spec = load_text(
        """
name: ask
graph:
  nodes:
    ask: {kind: human, prompt: "Go on?"}
    go_on: {fn: "statemachines.examples.nodes:publish"}
  conditional_edges:
    - from: ask
      conditions:
        - {if: "state.go == True and state['level'] > 1", then: go_on}
        - {else: __end__}
  entry: ask
"""
    )
    assert expected_keys(spec, "ask") == ["go", "level"]
    assert answer_problems(spec, "ask", {"go": True}) == []
    assert answer_problems(spec, "ask", {}) == ["no answer was given (the answer is a JSON object that becomes the node's update)"]
    [problem] = answer_problems(spec, "ask", {"goo": True})
    assert "read state.go, state.level, but the answer sets none of them: unexpected key 'goo' (did you mean 'go'?)" in problem


def test_a_subgraph_that_contains_itself_is_refused_naming_the_chain(tmp_path: Path):
    """It recursed until Python's stack ran out (a bare RecursionError naming no file or node)."""
    sub = "name: {name}\nstate: {{x: replace}}\ngraph:\n  nodes:\n    a: {{kind: subgraph, graph: {graph}}}\n  entry: a\n"
    (tmp_path / "self.yaml").write_text(sub.format(name="selfy", graph="self.yaml"))
    with pytest.raises(GraphError, match=r"subgraph 'self.yaml' contains itself \(self.yaml → self.yaml\)"):
        load_file(tmp_path / "self.yaml")
    (tmp_path / "m1.yaml").write_text(sub.format(name="m1", graph="m2.yaml"))
    (tmp_path / "m2.yaml").write_text(sub.format(name="m2", graph="m1.yaml"))
    with pytest.raises(GraphError, match=r"contains itself \(m1.yaml → m2.yaml → m1.yaml\)") as caught:
        load_file(tmp_path / "m1.yaml")
    assert "loop with edges inside one graph" in str(caught.value)
    (tmp_path / "m2.yaml").write_text(sub.format(name="m2", graph="leaf.yaml"))  # a chain without a cycle loads
    leaf = "name: leaf\nstate: {x: replace}\ngraph:\n  nodes:\n    b: {fn: 'stepwise.examples.nodes:fetch'}\n  entry: b\n"
    (tmp_path / "leaf.yaml").write_text(leaf)
    assert load_file(tmp_path / "m1.yaml").graph.nodes["a"].subgraph_spec is not None


@pytest.mark.parametrize(("name", "message"), [("a/b", "contains '/'"), ("__end__", "is where a run ends")])
def test_node_names_the_engine_reserves_are_refused(name: str, message: str):
    """'/' names a subgraph's node in a run (a node 'a/b' loaded, then its run failed with KeyError 'a')."""
    text = f"name: g\nstate: {{x: replace}}\ngraph:\n  nodes:\n    '{name}': {{fn: 'stepwise.examples.nodes:fetch'}}\n  entry: '{name}'\n"
    with pytest.raises(GraphError, match=message) as caught:
        load_text(text)
    assert len(caught.value.problems) == 1  # the name, not also its consequences (unreachable, unknown entry)


def test_a_node_named_yes_is_explained_as_yaml_reading_a_boolean():
    """The error was `node '1': graph.nodes.1.[key]: Input should be a valid string`."""
    text = "name: g\nstate: {x: replace}\ngraph:\n  nodes:\n    ask: {fn: 'stepwise.examples.nodes:fetch'}\n"
    text += "    yes: {fn: 'stepwise.examples.nodes:fetch'}\n  edges: [{from: ask, to: 'yes'}]\n  entry: ask\n"
    with pytest.raises(GraphError, match=r"named yes, no, on, off, true or false, which YAML reads as a boolean") as caught:
        load_text(text)
    assert "quote the name wherever it appears ('yes')" in str(caught.value)
    assert load_text(text.replace("    yes:", "    'yes':")).graph.nodes["yes"] is not None


FANOUT = """
name: p
state: {found: merge}
graph:
  nodes:
    split: {fn: "m:s"}
    a: {fn: "m:a"}
    b: {fn: "m:b"}
    join: {fn: "m:j"}
  parallel_nodes:
    - {from: split, to: [a, b]}
    - {from: [a, b], to: join}
  entry: split
"""


def test_on_error_is_refused_where_nothing_fans_out():
    load_text(FANOUT.replace('split: {fn: "m:s"}', 'split: {fn: "m:s", on_error: continue}'))  # the fan-out node: fine
    message = _error(FANOUT.replace('a: {fn: "m:a"}', 'a: {fn: "m:a", on_error: continue}'))
    assert "g.yaml:7: node 'a': `on_error: continue` applies only to a node that fans out" in message
    assert "move it to 'split', the fan-out node this node is a branch of" in message
    message = _error(
        GOOD.replace('default: {kind: function, fn: "statemachines.examples.nodes:default"}', 'default: {fn: "m:d", on_error: continue}')
    )
    assert "node 'default'" in message and "this function node does neither" in message and "Fix: remove it" in message


def test_tolerated_failure_percentage_is_refused_off_a_planner():
    message = _error(FANOUT.replace('split: {fn: "m:s"}', 'split: {fn: "m:s", tolerated_failure_percentage: 25}'))
    assert "node 'split': `tolerated_failure_percentage` applies only to a planner" in message
    assert "this function node has no items" in message and "on_error: continue" in message


def concat(current: str | None, update: str) -> str:
    return (current or "") + update


def one_argument(update: str) -> str:
    return update


def test_custom_reducers_are_imported_with_the_functions(tmp_path: Path):
    """``check_imports`` (``stepwise validate``/``run``) imports a custom reducer as it imports ``fn``: a bad
    path is a load error naming the channel, not a run that fails when a node first writes the channel."""
    path = tmp_path / "g.yaml"
    path.write_text(GOOD.replace("trail: append", f"trail: '{__name__}:concat'"))
    load_file(path, check_imports=True)
    for reducer, message in [
        ("no_such_module:concat", "reducer 'no_such_module:concat' of channel 'trail': cannot import 'no_such_module'"),
        (f"{__name__}:concatenate", f"{__name__!r} has no function 'concatenate'. Fix: define `def concatenate(current, update)`"),
        (f"{__name__}:one_argument", "cannot be called as one_argument(current, update)"),
        (f"{__name__}:", "is not an import path"),
    ]:
        path.write_text(GOOD.replace("trail: append", f"trail: '{reducer}'"))
        load_file(path)  # structure is fine
        with pytest.raises(GraphError) as info:
            load_file(path, check_imports=True)
        assert f"{path}:3: reducer '{reducer}' of channel 'trail'" in str(info.value) and message in str(info.value)


HUMAN = """
name: h
graph:
  nodes:
    ask: {kind: human, prompt: "ok?", config: {timeout_seconds: TIMEOUT}}
  entry: ask
"""


@pytest.mark.parametrize("timeout", ["1.5", "0", "-3", "'an hour'", "true"])
def test_a_human_nodes_timeout_is_whole_seconds_from_one_as_step_functions_takes_it(timeout: str) -> None:
    """It compiles to the wait Task's TimeoutSeconds; 1.5 was accepted and silently cut to 1 on both engines."""
    message = _error(HUMAN.replace("TIMEOUT", timeout))
    assert "node 'ask': config.timeout_seconds of a human node is" in message and "a whole number of seconds, at least 1" in message
    assert "timeout_seconds: 3600" in message


def test_a_human_nodes_whole_second_timeout_loads() -> None:
    assert load_text(HUMAN.replace("TIMEOUT", "3600")).graph.nodes["ask"].config["timeout_seconds"] == 3600
