"""The layering rule of README's "Architecture": a module never imports a module of a higher layer.

Read from the source (ast), so the rule holds for imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module's layer is that of the longest prefix listed here.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "core",
        (
            "harness",
            "harness.errors",
            "harness.records",
            "harness.atomic",
            "harness.digest",
            "harness.locations",
            "harness.config",
            "harness.versioned",
            "harness.stats",
            "harness.deprecations",
        ),
    ),
    (
        "formats",
        (
            "harness.benchlog",
            "harness.benchresult",
            "harness.dialect",
            "harness.outputs",
            "harness.report",
            "harness.runner",
            "harness.runner_zipapp",
            "harness.convert_files",
        ),
    ),
    ("phones", ("harness.phone", "harness.virtual_farm")),
    ("inputs", ("harness.convert", "harness.datasets", "harness.examples", "harness.numerics")),
    (
        "measure",
        (
            "harness.sweep",
            "harness.benchtool",
            "harness.binaries",
            "harness.store",
            "harness.layout",
            "harness.sustained",
        ),
    ),
    (
        "decide",
        (
            "harness.ranking",
            "harness.compare",
            "harness.coverage",
            "harness.policy",
            "harness.policy_file",
            "harness.policy_resolve",
            "harness.policy_diff",
        ),
    ),
    ("present", ("harness.demo", "harness.commands", "harness.cli", "dashboard")),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in ("harness", "dashboard")}


def _sources() -> list[Path]:
    return sorted([*ROOT.glob("harness/**/*.py"), *ROOT.glob("dashboard/**/*.py")])


def test_every_module_has_a_layer() -> None:
    assert [_module_name(p) for p in _sources() if _layer(_module_name(p)) is None] == []


def test_lower_layers_never_import_upper_ones() -> None:
    upward = []
    for path in _sources():
        module = _module_name(path)
        own = _layer(module)
        for imported in _imports(path):
            theirs = _layer(imported)
            if theirs is not None and own is not None and theirs > own:
                upward.append(f"{module} ({LAYERS[own][0]}) imports {imported} ({LAYERS[theirs][0]})")
    assert upward == []


def test_the_device_side_runner_imports_only_itself() -> None:
    """The runner ships alone in a zipapp (harness/runner_zipapp.py): harness/__init__.py and harness/runner/."""
    outside = [
        f"{_module_name(path)} imports {name}"
        for path in ROOT.glob("harness/runner/*.py")
        for name in _imports(path)
        if name not in ("harness", "harness.__version__")
        and not name.startswith("harness.runner.")
        and name != "harness.runner"
    ]
    assert outside == []
