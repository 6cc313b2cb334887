"""Import direction: ``globmed_jax`` never imports ``data_pipelines``, and its parts only import
downward (module-level and function-level imports alike, read with ``ast``, nothing executed)."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "globmed_jax"

# Rank of each top-level part of globmed_jax (a subpackage or a module): a part may import
# itself and parts of LOWER rank only. Adding a part means placing it here.
LAYERS: dict[str, int] = {
    # foundations: no globmed_jax imports
    "sharding": 0, "distributed": 0, "api_client": 0, "cli": 0,
    "models": 1,  # the model, HF I/O, tokenizer (eos_ids)
    "data": 2,  # Record, records_io, prompts, tasks, the input pipeline
    "decode": 3,  # the Decoder (generation, scoring)
    "evaluation": 4,  # bench: scoring, extract, runner, report, judge
    "training": 5,  # the loop; its held-out evaluation uses evaluation.scoring
    # entry points
    "train": 6, "evaluate": 6,
}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in the file, at any depth."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this file's package
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from globmed_jax import decode`` imports the part ``decode``.
            out += [(node.lineno, f"{base}.{a.name}" if base == "globmed_jax" else base) for a in node.names]
    return out


FILES = sorted(PACKAGE.rglob("*.py"))


def _part(module: str) -> str | None:
    """The top-level part of globmed_jax a module belongs to (None for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_files_found():
    assert len(FILES) > 20


def test_globmed_jax_never_imports_data_pipelines():
    bad = [f"{f.relative_to(PACKAGE.parent)}:{line}: {name}" for f in FILES for line, name in _imports(f)
           if name == "data_pipelines" or name.startswith("data_pipelines.")]
    assert not bad, "globmed_jax must not import data_pipelines (data_pipelines may import globmed_jax):\n" + "\n".join(bad)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_parts_only_import_downward(path):
    source = _part(_module_name(path))
    if source is None:  # globmed_jax/__init__.py
        return
    assert source in LAYERS, f"{source!r} is not in tests/test_architecture.py LAYERS; place it in a layer"
    bad = []
    for line, name in _imports(path):
        if not name.startswith("globmed_jax."):
            continue
        target = _part(name)
        assert target in LAYERS, f"{path}:{line}: {name}: part {target!r} is not in LAYERS"
        if target != source and LAYERS[target] >= LAYERS[source]:
            bad.append(f"line {line}: {name} ({target}, layer {LAYERS[target]} >= {source}, layer {LAYERS[source]})")
    assert not bad, f"{path.relative_to(PACKAGE.parent)} imports upward or sideways:\n" + "\n".join(bad)
