"""Mutation testing of the golden arithmetic, the unit cost formulas and the ISA.

``python -m bench.mutation [MODULE ...]`` (``make mutation``) runs Cosmic Ray on each
module against that module's own fast tests, prints the score per module and in total,
and writes it to ``bench/results/mutation.json`` as flat keys (``<module>.killed``,
``<module>.survived``, ``<module>.incompetent``, ``<module>.total`` (mutants run),
``<module>.generated`` (before sampling), ``<module>.score``, ``total.*``). The score is
``killed / (killed + survived)``; a test run that times out counts as killed, one that
cannot start as incompetent. The diff of every surviving mutant
goes to ``sim_build/mutation/<module>.survivors.txt``.

Cosmic Ray mutates the source file in place and puts it back after each test run, so the
editable install imports the mutant itself (``accelpool.hw`` maps to ``hw/``). Do not run
other tests in the same checkout meanwhile. A module whose run kills no mutant is an error:
its mutants were not exercised.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import print_table, write_results

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "sim_build" / "mutation"

# name -> (module, its fast tests, at most this many of its mutants or None for all).
# Tests that take minutes (sched/cost/test_noc.py, sched/cost/test_stream.py, the slow and
# the hypothesis tests of spec/golden/test_numerics.py) are left out, and so are their
# modules where nothing faster covers them. The modules with most mutants are sampled
# (a fixed seed, so the same mutants while the source stays the same): about 1100 mutants
# in all, at 1.5-4 s each, keep the whole run to about 40 minutes on 2 cores.
_NUMERICS_FAST = ("spec/golden/test_numerics.py", "-m", "'not slow'", "-k",
                  "'not hypothesis and not error_bound'")
MODULES: dict[str, tuple[str, tuple[str, ...], int | None]] = {
    "isa": ("spec/isa.py", ("spec/test_isa.py",), None),
    "cost.csr": ("sched/cost/csr.py", ("sched/cost/test_csr.py",), None),
    "cost.smu": ("sched/cost/smu.py", ("sched/cost/test_csr.py",), None),
    "cost.gnn": ("sched/cost/gnn.py", ("sched/cost/test_csr.py",), None),
    "cost.systolic": ("sched/cost/systolic.py", ("sched/cost/test_systolic.py",), None),
    "cost.ce": ("sched/cost/ce.py", ("sched/cost/test_ce.py",), 120),
    "cost.layout": ("sched/cost/layout.py", ("sched/cost/test_layout.py",), None),
    "golden.numerics": ("spec/golden/numerics.py", _NUMERICS_FAST, 120),
    "golden.activations": ("spec/golden/activations.py",
                           ("spec/golden/test_activations.py",), 100),
    "golden.conv": ("spec/golden/conv.py", ("spec/golden/test_conv.py",), 120),
    "golden.sparse": ("spec/golden/sparse.py", ("spec/golden/test_sparse.py",), 120),
}

# Every binary operator replaced by every other gives a dozen mutants per operator, most
# of them redundant; keep the replacements that model a slip (+ for -, // for /, << for
# >>, | for ^, ...). Comparisons swapped with `is` / `is not` only raise TypeError.
EXCLUDE_OPERATORS = (
    r"core/ReplaceBinaryOperator_(?!(?:Add_Sub|Add_Mul|Sub_Add|Mul_Add|Mul_FloorDiv|Div_Mul"
    r"|Div_FloorDiv|FloorDiv_Div|FloorDiv_Mul|Mod_FloorDiv|Pow_Mul|LShift_RShift|RShift_LShift"
    r"|BitAnd_BitOr|BitOr_BitAnd|BitOr_BitXor|BitXor_BitOr)$)",
    r"core/ReplaceComparisonOperator_(?!Is_IsNot$|IsNot_Is$)(?:\w+_Is|\w+_IsNot|Is_\w+|IsNot_\w+)$",
)


def _config(module: str, tests: tuple[str, ...], timeout: float) -> str:
    command = " ".join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests])
    excludes = ", ".join(json.dumps(e) for e in EXCLUDE_OPERATORS)  # TOML basic strings
    return (f'[cosmic-ray]\nmodule-path = {json.dumps(module)}\ntimeout = {timeout}\n'
            f'excluded-modules = []\ntest-command = {json.dumps(command)}\n\n'
            f'[cosmic-ray.distributor]\nname = "local"\n\n'
            f'[cosmic-ray.filters.operators-filter]\nexclude-operators = [{excludes}]\n')


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _run(args: list[str], source: Path) -> None:
    """Run a Cosmic Ray command; whatever stops it, leave ``source`` as it was."""
    original = source.read_bytes()
    proc = subprocess.Popen(args, cwd=ROOT)
    try:
        if proc.wait() != 0:
            raise RuntimeError(f"{' '.join(args)} failed with exit code {proc.returncode}")
    finally:
        if proc.poll() is None:  # interrupted: Cosmic Ray does not stop on SIGINT
            proc.kill()
            proc.wait()
        if source.read_bytes() != original:
            source.write_bytes(original)


def _sample(session: Path, limit: int) -> None:
    """Skip all but ``limit`` of the session's pending mutants, drawn with a fixed seed."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session), WorkDB.Mode.open) as db:
        pending = sorted(db.pending_work_items, key=lambda i: i.job_id)
        if len(pending) <= limit:
            return
        keep = {i.job_id for i in random.Random(0).sample(pending, limit)}
        for item in pending:
            if item.job_id not in keep:
                db.set_result(item.job_id, WorkResult(output="Not sampled",
                                                      worker_outcome=WorkerOutcome.SKIPPED))


def run_module(name: str, timeout: float = 120.0) -> dict[str, int]:
    """Mutate one module of :data:`MODULES` and run its tests on every mutant.

    Parameters
    ----------
    name : str
        A key of :data:`MODULES`.
    timeout : float
        Seconds one test run may take before it counts as killed.

    Returns
    -------
    dict
        ``killed``, ``survived``, ``incompetent``, ``total`` (mutants run) and
        ``generated`` (mutants before sampling).
    """
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    module, tests, limit = MODULES[name]
    source = ROOT / module
    WORK.mkdir(parents=True, exist_ok=True)
    config = WORK / f"{name}.toml"
    session = WORK / f"{name}.sqlite"
    config.write_text(_config(module, tests, timeout))
    session.unlink(missing_ok=True)
    _run([_tool("cosmic-ray"), "init", str(config), str(session)], source)
    _run([_tool("cr-filter-operators"), str(session), str(config)], source)
    if limit is not None:
        _sample(session, limit)
    _run([_tool("cosmic-ray"), "--verbosity", "WARNING", "baseline", str(config)], source)
    _run([_tool("cosmic-ray"), "--verbosity", "WARNING", "exec", str(config), str(session)],
         source)

    counts = {"killed": 0, "survived": 0, "incompetent": 0}
    survivors = []
    generated = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                generated += result.output == "Not sampled"
                continue
            if result.worker_outcome != WorkerOutcome.NORMAL:
                counts["incompetent"] += 1
            elif result.test_outcome == TestOutcome.KILLED:
                counts["killed"] += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                counts["survived"] += 1
                spec = item.mutations[0]
                survivors.append(f"# {spec.operator_name} line {spec.start_pos[0]}\n{result.diff}\n")
            else:
                counts["incompetent"] += 1
    counts["total"] = sum(counts.values())
    counts["generated"] = counts["total"] + generated
    (WORK / f"{name}.survivors.txt").write_text("\n".join(survivors))
    if counts["total"] and not counts["killed"]:
        raise RuntimeError(f"{name}: no mutant of {module} was killed; were they exercised?")
    return counts


def _score(c: dict[str, int]) -> float:
    judged = c["killed"] + c["survived"]
    return round(c["killed"] / judged, 4) if judged else 0.0


def main(argv: list[str] | None = None) -> int:
    """Run the modules named in ``argv`` (all of :data:`MODULES` by default)."""
    parser = argparse.ArgumentParser(prog="python -m bench.mutation", description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"of: {', '.join(MODULES)}")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one test run may take (default 120)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # so the sources are restored
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; available: {', '.join(MODULES)}")

    figures: dict[str, float] = {}
    rows = []
    total = {"killed": 0, "survived": 0, "incompetent": 0, "total": 0, "generated": 0}
    for name in args.modules or list(MODULES):
        start = time.monotonic()
        c = run_module(name, args.timeout)
        for k, v in c.items():
            figures[f"{name}.{k}"] = v
            total[k] += v
        figures[f"{name}.score"] = _score(c)
        rows.append([name, c["killed"], c["survived"], c["incompetent"], c["total"],
                     c["generated"], _score(c), round(time.monotonic() - start)])
    for k, v in total.items():
        figures[f"total.{k}"] = v
    figures["total.score"] = _score(total)
    rows.append(["total", total["killed"], total["survived"], total["incompetent"],
                 total["total"], total["generated"], _score(total), ""])
    print_table("Mutation score (killed / (killed + survived))",
                ["module", "killed", "survived", "incompetent", "total", "generated", "score", "s"], rows)
    print(f"surviving mutants: {WORK.relative_to(ROOT)}/<module>.survivors.txt")
    write_results("mutation", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
