"""Graphs that stress the machinery beyond the examples: nested fan-outs inside a loop, a human in a branch."""

NESTED_LOOP = """
name: nested-loop
state: {trail: append}
graph:
  nodes:
    split: {fn: "statemachines.examples.nodes:tick"}
    a:     {fn: "statemachines.examples.nodes:mark"}
    b:     {fn: "statemachines.examples.nodes:mark"}
    b1:    {fn: "statemachines.examples.nodes:mark"}
    b2:    {fn: "statemachines.examples.nodes:mark"}
    bj:    {fn: "statemachines.examples.nodes:mark"}
    join:  {fn: "statemachines.examples.nodes:mark"}
  parallel_nodes:
    - {from: split, to: [a, b]}
    - {from: b, to: [b1, b2]}
    - {from: [b1, b2], to: bj}
    - {from: [a, bj], to: join}
  conditional_edges:
    - from: join
      conditions:
        - {if: "state.round < 2", then: split}
        - {else: __end__}
  entry: split
"""

NESTED_LOOP_TRAIL = ["tick", "a", "b", "b1", "b2", "bj", "join"] * 2

HUMAN_IN_BRANCH = """
name: human-in-branch
state: {trail: append}
graph:
  nodes:
    split: {fn: "statemachines.examples.nodes:tick"}
    a:     {fn: "statemachines.examples.nodes:mark"}
    ask:   {kind: human, prompt: "Go on?"}
    join:  {fn: "statemachines.examples.nodes:mark"}
  parallel_nodes:
    - {from: split, to: [a, ask]}
    - {from: [a, ask], to: join}
  entry: split
"""
