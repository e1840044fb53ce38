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

# The seed's own parallel form, inside a bounded cycle: parallel_nodes lists the branch names, and the
# fan-out and fan-in are edges with a list on one side.
SEED_PARALLEL_LOOP = """
name: seed-parallel-loop
state: {trail: append}
graph:
  nodes:
    split:  {fn: "statemachines.examples.nodes:tick"}
    task_a: {fn: "statemachines.examples.nodes:mark"}
    task_b: {fn: "statemachines.examples.nodes:mark"}
    task_c: {fn: "statemachines.examples.nodes:mark"}
    join:   {fn: "statemachines.examples.nodes:mark"}
  parallel_nodes: [task_a, task_b, task_c]
  edges:
    - {from: split, to: [task_a, task_b, task_c]}
    - {from: [task_a, task_b, task_c], to: join}
  conditional_edges:
    - from: join
      conditions:
        - {if: "state.round < 3", then: split}
        - {else: __end__}
  entry: split
  max_iterations: 3
"""

SEED_PARALLEL_LOOP_TRAIL = ["tick", "task_a", "task_b", "task_c", "join"] * 3
