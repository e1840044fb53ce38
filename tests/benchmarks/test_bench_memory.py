"""The memory benchmark's shipped data set and report (the measurements themselves run in bench/)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.memory import dataset
from bench.memory.__main__ import END, START, write_docs
from bench.memory.recall import evaluate

from stepwise.memory.embedders import HashingEmbedder


def test_shipped_dataset_is_the_built_one() -> None:
    shipped = dataset.load()
    assert shipped == json.loads(json.dumps(dataset.build()))
    assert (len(shipped["facts"]), len(shipped["questions"]), len(shipped["distractors"])) == (200, 100, 200)
    assert {d["kind"] for d in shipped["distractors"]} == {"negation", "entity_swap"}
    facts = {f["id"] for f in shipped["facts"]}
    assert all(q["answer"] in facts for q in shipped["questions"])


def test_recall_harness_runs_on_the_fallback() -> None:
    result = evaluate(HashingEmbedder())
    assert result["questions"] == 100 and 0 <= result["recall@1"] <= result["recall@5"] <= 1


def test_docs_section_is_replaced_in_place(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nmain part\n\n{START}\nold\n{END}\n\nafter\n")
    results = json.loads((Path(__file__).parents[2] / "bench" / "results" / "memory.json").read_text())
    write_docs(results, doc)
    text = doc.read_text()
    assert "main part" in text and "after" in text and "old" not in text and text.count(START) == 1
    assert "## Memory" in text and "recall@5" in text
