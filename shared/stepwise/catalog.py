"""The example graphs shipped inside the package (``stepwise examples``): list them, copy one out.

The files live in ``statemachines/examples`` in the repository; the package sees the same directory
as ``stepwise.examples`` (a symlink in the source tree, real files in the wheel). Their function nodes
name ``stepwise.examples.nodes``, so a copied example runs anywhere the package is installed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from stepwise.extras import LLM_KINDS


@dataclass(frozen=True)
class Example:
    """One bundled example graph: its name, file and what it shows."""

    name: str
    path: Path
    summary: str
    extras: tuple[str, ...]  # what it needs to run
    subgraphs: tuple[str, ...]
    better_with: tuple[str, ...] = ()  # what it runs better with (memory: the MiniLM embedder over the hashing one)


def examples_dir() -> Path:
    return Path(str(resources.files("stepwise.examples")))


def _summary(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    first = " ".join(lines).split(". ")[0].rstrip(".")
    return first if len(first) <= 72 else first[:71].rsplit(" ", 1)[0] + " …"


def _describe(path: Path) -> Example:
    text = path.read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text) or {}
    nodes = (data.get("graph") or {}).get("nodes") or {}
    kinds = {str((n or {}).get("kind", "function")) for n in nodes.values() if isinstance(n, dict)}
    subgraphs = tuple(sorted(str(n["graph"]) for n in nodes.values() if isinstance(n, dict) and n.get("kind") == "subgraph"))
    uses_memory = any(isinstance(n, dict) and n.get("memory") for n in nodes.values())
    extras = ("llm",) * bool(kinds & LLM_KINDS)  # memory runs on llm's Valkey and the hashing embedder without its extra
    return Example(path.stem, path, _summary(text), extras, subgraphs, ("memory",) * uses_memory)


def list_examples() -> list[Example]:
    return [_describe(p) for p in sorted(examples_dir().glob("*.yaml"))]


def find(name: str) -> Example:
    name = name.removesuffix(".yaml")
    for example in list_examples():
        if example.name == name:
            return example
    known = ", ".join(e.name for e in list_examples())
    raise KeyError(f"no example {name!r}; the examples are: {known}")


def copy_example(name: str, dest: Path, *, overwrite: bool = False) -> list[Path]:
    """Copy an example (and the graphs it runs as subgraphs) into ``dest``; return the files written. A file
    already there with the same content (a subgraph another example copied) is left as it is; one with other
    content is refused unless ``overwrite``."""
    example = find(name)
    sources = [example.path, *(example.path.parent / s for s in example.subgraphs)]
    pairs = [(src, dest / src.name) for src in sources]
    pairs = [(src, dst) for src, dst in pairs if not (dst.is_file() and dst.read_bytes() == src.read_bytes())]
    clash = [dst for _, dst in pairs if dst.exists()]
    if clash and not overwrite:
        raise FileExistsError(f"{clash[0]} already exists with other content; pass --force to overwrite it")
    dest.mkdir(parents=True, exist_ok=True)
    for src, dst in pairs:
        shutil.copyfile(src, dst)
    return [dst for _, dst in pairs]
