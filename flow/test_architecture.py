"""The layers of docs/architecture.md, checked on the code's imports.

Every import of product code (test modules left out), at module level or inside a
function, and every module named by a string (``importlib.import_module("accelpool...")``)
must point to its own layer or one below it; ``hw`` and ``sched`` are independent of each
other; no two product modules import each other, directly or through others (a module
named by string is loaded at run time, as a registry loads its providers or the simulator
its cocotb module, and is left out of that last check).
"""

from __future__ import annotations

import ast
import importlib.util
import tomllib
from pathlib import Path

import grimp
import networkx as nx
import pytest

#: Top to bottom; a tuple is one level of independent layers.
LAYERS = ("accelpool.flow", "accelpool.tb", ("accelpool.hw", "accelpool.sched"), "accelpool.spec")
PACKAGES = ("accelpool.spec", "accelpool.hw", "accelpool.sched", "accelpool.tb", "accelpool.flow")


def _is_test(module: str) -> bool:
    return module.rsplit(".", 1)[-1].startswith("test_")


def module_strings(source: str) -> set[str]:
    """Modules of ours named by string constants of ``source`` (whole dotted names, or the
    fixed head of an f-string such as ``f"accelpool.spec.units.{kind}"``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            text = str(node.values[0].value).rstrip(".")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        parts = text.split(".")
        if len(parts) > 1 and parts[0] == "accelpool" and all(p.isidentifier() for p in parts):
            found.add(text)
    return found


def product_graph(named: bool = True) -> grimp.ImportGraph:
    """The import graph of the product modules; with ``named``, also an edge to every
    module a product module names by string."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    for m in list(graph.modules):
        if _is_test(m):
            graph.remove_module(m)
    for m in list(graph.modules) if named else ():
        spec = importlib.util.find_spec(m)
        for target in module_strings(Path(spec.origin).read_text()):
            while target not in graph.modules and "." in target:
                target = target.rpartition(".")[0]
            if target in graph.modules and target != m:
                graph.add_import(importer=m, imported=target)
    return graph


def layer_violations(graph: grimp.ImportGraph) -> list[str]:
    """``importer -> imported`` for every import against :data:`LAYERS`."""
    layers = [grimp.Layer(*lv, independent=True) if isinstance(lv, tuple) else lv
              for lv in LAYERS]
    out = []
    for dep in graph.find_illegal_dependencies_for_layers(layers=layers):
        for route in dep.routes:
            for head in route.heads:
                for tail in route.tails:
                    chain = [head, *route.middle, tail]
                    out.append(" -> ".join(chain))
    return sorted(out)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The sets of modules that import each other (strongly connected, more than one)."""
    g = nx.DiGraph()
    for m in graph.modules:
        g.add_node(m)
        for t in graph.find_modules_directly_imported_by(m):
            g.add_edge(m, t)
    return sorted(sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1)


def test_every_import_points_to_its_own_layer_or_below():
    assert layer_violations(product_graph()) == []


def test_no_product_modules_import_each_other():
    assert import_cycles(product_graph(named=False)) == []


def test_every_installed_package_is_a_layer():
    root = Path(__file__).resolve().parent.parent
    dirs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    layered = {p for lv in LAYERS for p in (lv if isinstance(lv, tuple) else (lv,))}
    assert set(dirs) - {"accelpool.configs"} == layered == set(PACKAGES)


def test_every_package_of_the_layers_is_installed():
    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"accelpool." + ".".join(init.parent.relative_to(root).parts)
             for layer in PACKAGES for init in (root / layer.split(".")[1]).rglob("__init__.py")}
    assert found - listed == set()


def _toy(imports: list[tuple[str, str]]) -> grimp.ImportGraph:
    g = grimp.ImportGraph()
    for p in PACKAGES:
        g.add_module(p)
    for a, b in imports:
        for m in (a, b):
            g.add_module(m)
        g.add_import(importer=a, imported=b)
    return g


@pytest.mark.parametrize("importer, imported", [
    ("accelpool.hw.soc", "accelpool.tb.soc"),            # RTL importing the harness
    ("accelpool.sched.codegen", "accelpool.hw.afu"),     # the compiler importing the RTL
    ("accelpool.hw.afu", "accelpool.sched.golden"),      # RTL importing the compiler
    ("accelpool.tb.stream_jobs", "accelpool.flow.simflow"),
    ("accelpool.spec.isa", "accelpool.hw.dmu"),
    ("accelpool.sched.calibration", "accelpool.tb.soc"),
])
def test_the_check_finds_an_upward_or_sideways_import(importer, imported):
    g = _toy([(importer, imported), ("accelpool.flow.cli", "accelpool.spec.config")])
    assert layer_violations(g) == [f"{importer} -> {imported}"]


def test_the_check_finds_a_cycle_and_a_module_named_by_string():
    g = _toy([("accelpool.flow.cli", "accelpool.flow.schedule_cmd"),
              ("accelpool.flow.schedule_cmd", "accelpool.flow.cli"),
              ("accelpool.sched.codegen", "accelpool.sched.pool")])
    assert import_cycles(g) == [["accelpool.flow.cli", "accelpool.flow.schedule_cmd"]]
    src = ('import importlib\n'
           'importlib.import_module(f"accelpool.hw.{kind}")\n'
           'TABLE = {"dmu": "accelpool.sched.cost.dmu", "doc": "see accelpool.hw for it"}\n')
    assert module_strings(src) == {"accelpool.hw", "accelpool.sched.cost.dmu"}
