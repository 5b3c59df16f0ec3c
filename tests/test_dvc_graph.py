"""The DVC graph is complete: every project module a stage runs (its transitive imports, from stages/<name>.py)
is one of its deps, every stage depends on the `common` params its setup reads, and every declared out lives in
the stage's own artifacts directory. (That every file a stage writes is declared is checked on a real run in
tests/test_faults.py.)"""
from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=None)
def imported_modules(path: Path, package: str) -> set[str]:
    """Project modules named by any import in the file, function-level (lazy) imports included."""
    out: set[str] = set()
    for node in walk_skipping_validators(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from pipeline import rle` names a module
            if any(a.name.startswith("build") for a in node.names) and base.split(".")[0] in PACKAGES:
                out |= registry_modules(base)  # build_proposer / build_encoders import a backend by its name
    return {m for m in out if m.split(".")[0] in PACKAGES and module_file(m)}


def walk_skipping_validators(tree: ast.AST):
    """ast.walk, except the bodies of pydantic validators: params.py imports registries there only to check a
    name (masks.backend, score.methods); the stage that builds a backend imports it itself."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and getattr(d.func, "id", "") == "field_validator" for d in node.decorator_list):
            continue
        todo += list(ast.iter_child_nodes(node))


@functools.lru_cache(maxsize=None)
def registry_modules(name: str) -> set[str]:
    """Backends the registries of module `name` name by string: importing its build_* function (build_proposer,
    build_encoders) runs them, though no import statement names them."""
    from pipeline.registry import Registry

    if not module_file(name):
        return set()
    mod = importlib.import_module(name)
    regs = [v for v in vars(mod).values() if isinstance(v, Registry)]
    return {b.builder.split(":")[0] for r in regs for b in r.backends.values()}


@functools.lru_cache(maxsize=None)
def closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        parents = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}  # importing a.b runs a
        todo += sorted(imported_modules(path, package) | {p for p in parents if module_file(p)})
    return seen


def covered(file: Path, deps: list[str]) -> bool:
    rel = file.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


# `wish <stage>` enters through the console script: cli.py itself runs (it reaches stages/<stage>.py by name)
ENTRY = {"stages", "stages.cli"}


@pytest.mark.parametrize("stage", sorted(dvc_stages()))
def test_stage_deps_cover_every_module_it_runs(stage):
    spec = dvc_stages()[stage]
    assert spec["cmd"].split()[:2] == ["wish", stage]
    modules = closure(f"stages.{stage}") | ENTRY
    missing = sorted(str(module_file(m).relative_to(ROOT)) for m in modules if not covered(module_file(m), spec["deps"]))
    assert missing == [], f"{stage} runs these modules but does not depend on them"


@pytest.mark.parametrize("stage", sorted(dvc_stages()))
def test_every_stage_depends_on_common_params(stage):
    # stages.common.setup seeds every RNG with common.seed and sets common.num_threads (float summation order)
    params = [p if isinstance(p, str) else next(iter(p)) for p in dvc_stages()[stage].get("params", [])]
    assert "common" in params


def test_outs_live_in_the_stages_own_directory():
    for stage, spec in dvc_stages().items():
        for kind in ("outs", "metrics", "plots"):
            for out in spec.get(kind, []):
                path = Path(out if isinstance(out, str) else next(iter(out)))
                assert path.parts[0] == "metrics" or path.parts[:2] == ("artifacts", stage), (stage, path)


def test_closure_finds_lazy_and_registry_imports():
    mods = closure("stages.masks")
    # lazy (function-level) import, the registry's string-named backend and a module imported by that backend
    assert {"pipeline.masks.run", "pipeline.masks.offline", "pipeline.masks.sam", "pipeline.rle"} <= mods
    assert "pipeline.heads" not in mods
