"""The scheduler's cost model: unit latency per micro-op, NoC transfer time, calibration.

Unit latency
    :meth:`CostModel.exec_cycles` prices an EXEC with its unit's cycle formula
    (:data:`accelpool.sched.cost.formula.FORMULAS`: ``sched/cost/<kind>.py``'s exact
    ``cycles(tile, **args)``, written with the unit's RTL, and how a micro-op's shape
    becomes its arguments); a kind without one is refused by name. Every kind then gets
    ``scale * formula + overhead``, ``scale = 1`` and ``overhead = 0`` until
    :func:`calibrate` fits both to measurements of the whole tile.

Dataflow (``CostModel(pool, dataflow=...)``)
    ``"memory"`` (default, what :mod:`accelpool.sched.codegen` emits): every micro-op LOADs all its
    operands from the memory tile and STOREs its result there; both are part of its
    unit's occupancy (:meth:`CostModel.task_cycles`), and a consumer on another unit only
    waits for the producer's fence and SIGNAL (:meth:`CostModel.comm_cycles`). Where a
    unit sits relative to the memory tile is what the NoC costs; contention is on the
    links into and out of the memory tile (``accelpool.sched.schedulers.replay``).
    ``"direct"``: results go from the producer's tile to the consumer's (the ISA's STORE
    to another tile's scratchpad), only graph inputs, weights and outputs touch memory;
    contention on the route between the two tiles.

NoC transfer
    With ``sched/cost/noc.py`` (the NoC's RTL-derived timing, ``noc_model="rtl"``, the
    default), a transfer costs its ``store_cycles(length, hops, flit_bits=)`` and a load
    from memory its ``load_cycles``. With ``noc_model="fallback"``, an analytic model:
    ``transfer_cycles(nbytes, src, dst)``: XY routing on ``pool.mesh``; the payload is
    split into packets of at most ``max_packet_flits`` flits of ``mesh.flit_bits``; each
    packet carries ``packet_overhead_flits`` header flits; the head pays
    ``router_cycles`` per hop and the tail follows one flit per cycle. Transfers inside a
    tile cost nothing. :class:`LinkTable` adds link contention: a transfer occupies every
    link of its XY route for its serialisation time and starts when all are free.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import inspect
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from accelpool.sched.cost import noc
from accelpool.sched.cost.formula import FORMULAS, Formula
from accelpool.sched.cost.stream import ISSUE_INTERVAL, memory_service_cycles, op_cycles
from accelpool.sched.ir import OpType
from accelpool.sched.lower import op_transfers
from accelpool.sched.lower.common import CodegenError
from accelpool.spec.config import DType, TileConfig, UnitKind, load_config

__all__ = [
    "DATAFLOWS", "CostParams", "NocParams", "KindParams", "CostModel", "LinkTable", "xy_route",
    "shape_args", "Measurement", "CalibrationResult", "calibrate",
    "CalibrationError",
]


#: How results travel between micro-ops: through the memory tile (what :mod:`accelpool.sched.codegen`
#: emits) or directly from the producer's tile to the consumer's.
DATAFLOWS = ("memory", "direct")


class CalibrationError(ValueError):
    """Measurements that cannot calibrate the model (too few, or a fit that misses)."""


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class KindParams:
    """Calibration of one unit kind: ``cycles = scale * formula + overhead``."""

    scale: float = 1.0
    overhead: float = 0.0


@dataclass(frozen=True)
class NocParams:
    """NoC timing: router pipeline per hop, packet header flits, packet size, NI latency.

    Defaults follow the mesh RTL (``hw/noc``: 1 cycle per hop, one 64-bit header flit per
    packet, every WRITE acknowledged and every READ answered); ``ni_cycles`` and
    ``max_packet_flits`` await calibration against its RTL.
    """

    router_cycles: int = 1
    packet_overhead_flits: int = 1
    max_packet_flits: int = 64
    ni_cycles: int = 4


@dataclass(frozen=True)
class CostParams:
    """All of the model's free parameters."""

    kinds: Mapping[UnitKind, KindParams] = field(
        default_factory=lambda: {k: KindParams() for k in FORMULAS})
    noc: NocParams = NocParams()


def shape_args(op: Any) -> dict[str, int]:
    """The formula arguments of a micro-op: its IR ``shape``, plus for SPMM ``nnz_macs``
    (multiply-accumulates on non-zeros only: the sparse operand's non-zero count, ``size *
    (1 - sparsity)``, times the dense operand's other dimension) and the SMU's own ``m``,
    ``n``, ``nnz`` (rows of the sparse matrix, dense columns, non-zeros; the per-row
    counts are unknown here, so the SMU formula spreads them evenly: an estimate).
    """
    shape = dict(op.shape)
    if op.op is OpType.SPMM:
        M, K, N = shape["M"], shape["K"], shape["N"]
        sparse_a = op.attrs.get("sparse_operand", 0) == 0
        nnz = round((M * K if sparse_a else K * N) * (1.0 - op.sparsity))
        shape["nnz_macs"] = nnz * (N if sparse_a else M)
        # The SMU's own terms (sched/cost/smu.py): sparse matrix rows m, dense columns n.
        # A sparse B runs as C^T = B^T A^T: B^T (N x K) is the sparse operand.
        shape["m"], shape["n"], shape["nnz"] = (M, N, nnz) if sparse_a else (N, M, nnz)
    return shape


def _code(kind: UnitKind) -> int:
    return kind.value


def _unit_formula(kind: UnitKind) -> Formula:
    """``kind``'s cycle formula (:data:`~accelpool.sched.cost.formula.FORMULAS`).

    Raises
    ------
    ValueError
        If the kind has none, naming it and the kinds that have one.
    """
    try:
        return FORMULAS[kind]
    except KeyError:
        raise ValueError(f"No cycle formula for unit kind {kind.key!r} (its cost module "
                         f"registers one); kinds with one: "
                         f"{', '.join(k.key for k in sorted(FORMULAS, key=_code))}") from None


def _call_formula(kind: UnitKind, fn: Callable[..., int], tile: TileConfig,
                  shape: Mapping[str, int]) -> int:
    """Call a unit's formula with the shape arguments it declares (names matched exactly,
    else case-insensitively: the IR says ``M``, a unit module may say ``m``)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return int(fn(tile, **shape))
    params = list(sig.parameters.values())[1:]
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    lower = {k.lower(): v for k, v in shape.items()}
    args, missing = {}, []
    for p in named:
        if p.name in shape:
            args[p.name] = shape[p.name]
        elif p.name.lower() in lower:
            args[p.name] = lower[p.name.lower()]
        elif p.default is p.empty:
            missing.append(p.name)
    if missing:
        raise TypeError(f"The {kind.key} cycle formula {fn.__module__}.{fn.__name__} needs "
                        f"{', '.join(missing)}; the micro-op gives {', '.join(shape)}")
    if any(p.kind is p.VAR_KEYWORD for p in params):
        taken = {p.name.lower() for p in named}
        args.update({k: v for k, v in shape.items() if k.lower() not in taken})
    return int(fn(tile, **args))


def xy_route(src: tuple[int, int], dst: tuple[int, int]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The directed links of the XY route from ``src`` to ``dst`` (X first, then Y)."""
    links = []
    x, y = src
    while x != dst[0]:
        nx = x + (1 if dst[0] > x else -1)
        links.append(((x, y), (nx, y)))
        x = nx
    while y != dst[1]:
        ny = y + (1 if dst[1] > y else -1)
        links.append(((x, y), (x, ny)))
        y = ny
    return links


class CostModel:
    """Latency of micro-ops on units and of data movement on the mesh.

    Parameters
    ----------
    pool : sched.pool.Pool
        The pool (its mesh gives hop distances and flit width).
    params : CostParams, optional
        Calibrated parameters; defaults until :func:`calibrate` has run on RTL data.

    dataflow : {"memory", "direct"}
        How results travel (module docstring).
    noc_model : {"rtl", "fallback"}
        ``"rtl"``: ``sched/cost/noc.py``, the NoC's RTL-derived timing; ``"fallback"``: the
        analytic model of the module docstring.

    A unit running an emulated op (baseline pools) is priced as the op's equivalent
    dense GEMM.
    """

    def __init__(self, pool: Any, params: CostParams | None = None, dataflow: str = "memory",
                 noc_model: str = "rtl"):
        if noc_model not in ("rtl", "fallback"):
            raise ValueError(f"noc_model must be 'rtl' (sched/cost/noc.py) or "
                             f"'fallback', not {noc_model!r}")
        if dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow must be one of {', '.join(map(repr, DATAFLOWS))}, "
                             f"not {dataflow!r}")
        self.dataflow = dataflow
        self.pool = pool
        # A formula from the unit's RTL counts the unit's busy cycles exactly: no overhead
        # on top until calibration against the tile says otherwise.
        self.params = params if params is not None else CostParams()
        self.mesh = pool.mesh
        self._formulas: dict[UnitKind, Formula] = {}
        self._exec_cache: dict[tuple, int] = {}
        self._mean_hops: dict[tuple, float] = {}
        self._serial: dict[int, int] = {}
        self._mem_at = pool.memory.at
        self._fixed_cycles = 2 * self.params.noc.ni_cycles
        self._router = self.params.noc.router_cycles
        self._noc = noc if noc_model == "rtl" else None
        self._sync: dict[tuple, int] = {}
        self._io: dict[tuple, int] = {}
        self._bytes_per_flit = self.mesh.flit_bits // 8
        self._cmd_cache: dict[tuple, int | None] = {}
        #: Price micro-ops by the commands codegen emits for them (see :meth:`task_cycles`).
        self.command_level = True

    def memory_phases(self, dag: Any, n: Any, unit: Any) -> tuple[int, ...] | None:
        """The command-level occupancy of micro-op ``n`` on ``unit`` in phases, for
        contention: ``(load, load_service, load_tail, middle, store, store_service,
        store_tail)`` with ``load`` and ``store`` the cycles its LOAD and STORE commands
        occupy the tile alone, ``*_service`` the cycles the memory tile is busy serving them
        (:func:`accelpool.sched.cost.stream.op_memory_cycles`: one packet server for every tile),
        ``*_tail`` what the phase's last command still takes after its last packet is served
        (the response's or acknowledgement's flight and the issue slot), and ``middle`` the
        rest (EXEC, SIGNALs); ``load + middle + store`` is :meth:`task_cycles`. None where
        :meth:`task_cycles` is not command-level."""
        total = self._command_cycles(dag, n, unit) if self.command_level else None
        if total is None:
            return None
        key = ("phases", n, unit.name)
        hit = self._cmd_cache.get(key)
        if hit is None:
            loads, stores = op_transfers(dag.graph["ir"], dag.nodes[n]["op"], unit.tile,
                                         self._bytes_per_flit)
            hops = abs(self._mem_at[0] - unit.at[0]) + abs(self._mem_at[1] - unit.at[1])
            kw = dict(flit_bits=self.mesh.flit_bits)

            def phase(lengths, alone, what):
                occ = [max(ISSUE_INTERVAL, 1 + alone(b, hops, **kw)) for b in lengths]
                srv = [memory_service_cycles(what, b, **kw) for b in lengths]
                tail = max(0, occ[-1] - srv[-1]) if lengths else 0
                return sum(occ), sum(srv), tail

            ld, ld_srv, ld_tail = phase(loads, self._noc.load_cycles, "LOAD")
            st, st_srv, st_tail = phase(stores, self._noc.store_cycles, "STORE")
            hit = (ld, ld_srv, ld_tail, total - ld - st, st, st_srv, st_tail)
            self._cmd_cache[key] = hit
        return hit

    def _command_cycles(self, dag: Any, n: Any, unit: Any) -> int | None:
        """:meth:`task_cycles` from codegen's commands, or None where codegen does not lower."""
        graph = dag.graph.get("ir")
        if graph is None:
            return None
        signals = min(dag.out_degree(n), 1)
        key = (n, unit.name, signals)
        if key in self._cmd_cache:
            return self._cmd_cache[key]
        out = None
        op = dag.nodes[n]["op"]
        try:
            loads, stores = op_transfers(graph, op, unit.tile, self._bytes_per_flit)
        except CodegenError:
            loads = None
        if loads is not None:
            hops = abs(self._mem_at[0] - unit.at[0]) + abs(self._mem_at[1] - unit.at[1])
            out = op_cycles(loads, self.exec_cycles(op, unit), stores, hops=hops,
                            signals=signals, flit_bits=self.mesh.flit_bits)
        self._cmd_cache[key] = out
        return out

    # -- units -------------------------------------------------------------------------
    def formula(self, kind: UnitKind) -> Formula:
        """``kind``'s cycle formula (ValueError naming the kind if it has none)."""
        hit = self._formulas.get(kind)
        if hit is None:
            hit = self._formulas[kind] = _unit_formula(kind)
        return hit

    def raw_cycles(self, kind: UnitKind, tile: TileConfig, shape: Mapping[str, int]) -> int:
        """The uncalibrated formula value."""
        return _call_formula(kind, self.formula(kind).cycles, tile, shape)

    def exec_cycles(self, op: Any, unit: Any) -> int:
        """Cycles ``unit`` spends computing ``op`` (operands already in its scratchpad)."""
        kind = unit.kind
        key = (unit.name, op.op, op.func, op.dtype, op.sparsity, tuple(op.shape.items()),
               op.attrs.get("sparse_operand", 0))
        hit = self._exec_cache.get(key)
        if hit is not None:
            return hit
        shape = self._translate(op, kind, shape_args(op), unit)
        kp = self.params.kinds.get(kind, KindParams())
        cyc = max(1, math.ceil(kp.scale * self.raw_cycles(kind, unit.tile, shape) + kp.overhead))
        self._exec_cache[key] = cyc
        return cyc

    def _translate(self, op: Any, kind: UnitKind, shape: dict[str, int],
                   unit: Any = None) -> dict[str, Any]:
        """The formula arguments of ``op`` on a unit of ``kind`` (emulated ops become GEMMs)."""
        tile = unit.tile if unit is not None else self.pool.memory
        return self.formula(kind).arguments(op, shape, tile)

    def edge_bytes(self, dag: Any, u: Any, v: Any) -> int:
        """Bytes of ``u``'s results that ``v`` reads (box intersections; aliases: all of them)."""
        data = dag.edges[u, v]
        hit = data.get("bytes")
        if hit is not None:
            return hit
        pu, pv = dag.nodes[u]["op"], dag.nodes[v]["op"]
        out_elems = sum(r.size for r in pu.outputs)
        per = (pu.bytes_out / out_elems) if pu.bytes_out and out_elems else 2
        total = 0
        for w in pu.outputs:
            for r in pv.inputs:
                if r.buffer == w.buffer:
                    total += math.prod(max(0, min(a + s, b + t) - max(a, b))
                                       for a, s, b, t in zip(w.offset, w.shape, r.offset, r.shape))
        if total == 0:   # read through an alias of the result buffer: count all of it
            total = out_elems
        nbytes = int(math.ceil(total * per))
        data["bytes"] = nbytes
        return nbytes

    def memory_bytes(self, dag: Any, n: Any) -> tuple[int, int]:
        """(bytes loaded from the memory tile, bytes stored back) for micro-op ``n``.

        Loaded: its operand bytes not produced by a predecessor (graph inputs, weights).
        Stored: its results if nothing in the DAG reads them (graph outputs).
        """
        from_preds = sum(d["bytes"] if "bytes" in d else self.edge_bytes(dag, p, n)
                         for p, d in dag.pred[n].items())
        return self.external_bytes(dag.nodes[n]["op"], from_preds, dag.out_degree(n) == 0)

    def external_bytes(self, op: Any, from_preds: int, is_sink: bool) -> tuple[int, int]:
        """:meth:`memory_bytes` given the bytes arriving from predecessors.

        With ``dataflow="memory"`` (what :mod:`accelpool.sched.codegen` emits) every operand is
        loaded from memory and every result stored there, whoever produced it."""
        bytes_in = op.bytes_in or sum(r.size for r in op.inputs) * op.dtype.bytes
        bytes_out = op.bytes_out or sum(r.size for r in op.outputs) * op.dtype.bytes
        if self.dataflow == "memory":
            return bytes_in, bytes_out
        return max(0, bytes_in - from_preds), (bytes_out if is_sink else 0)

    def task_cycles(self, dag: Any, n: Any, unit: Any, ext: tuple[int, int] | None = None) -> int:
        """Cycles ``unit`` is occupied by micro-op ``n``: load its external operands from
        the memory tile, compute, store a graph output back (the tile's command stream runs
        these in sequence). ``ext`` = :meth:`memory_bytes` if already known.

        With the memory dataflow, when the DAG belongs to an IR graph and :mod:`accelpool.sched.codegen`
        lowers the micro-op on the unit, the occupancy is that of the very commands codegen
        emits (:func:`accelpool.sched.codegen.op_transfers`: one LOAD per operand row run or
        unit-format constant, one STORE per result row run) timed by the tile's command
        rules (:func:`accelpool.sched.cost.stream.op_cycles`: controller issue slots, each LOAD and
        STORE at its hop distance, the EXEC, one SIGNAL per consuming unit, at most the
        number of successors). Otherwise the bytes-based estimate below."""
        if self.dataflow == "memory" and self.command_level:
            hit = self._command_cycles(dag, n, unit)
            if hit is not None:
                return hit
        if ext is None:
            ext = self.memory_bytes(dag, n)
        return self.exec_cycles(dag.nodes[n]["op"], unit) + self.memory_cycles(unit, *ext)

    def comm_cycles(self, nbytes: int, src: Any, dst: Any) -> int:
        """Delay between a result of ``nbytes`` finishing on ``src`` and ``dst`` being able
        to use it (0 on the same unit).

        ``dataflow="direct"``: the result crosses the mesh from ``src`` to ``dst``.
        ``dataflow="memory"``: the result is already in memory (its STORE is part of the
        producer's occupancy, the consumer's LOAD of its own): what remains is the
        producer's fence (a 32-byte LOAD from memory) and the SIGNAL's flight."""
        if src is dst:
            return 0
        if self.dataflow == "memory":
            return self.sync_cycles(src, dst)
        return self.transfer_cycles(nbytes, src.at, dst.at)

    def sync_cycles(self, src: Any, dst: Any) -> int:
        """Fence plus SIGNAL from ``src`` to ``dst`` (memory dataflow). The memory tile's
        writes are complete when its EXEC ends, and a SIGNAL to the memory tile is ordered
        after the STOREs there: neither needs a fence."""
        no_fence = UnitKind.MEMORY in (src.kind, dst.kind)
        key = (src.at, dst.at, no_fence)
        hit = self._sync.get(key)
        if hit is None:
            fence = 0 if no_fence else self.load_cycles(32, src.at)
            hops = abs(src.at[0] - dst.at[0]) + abs(src.at[1] - dst.at[1])
            hit = self._sync[key] = fence + 1 + hops * self._router + 2
        return hit

    def load_cycles(self, nbytes: int, at: tuple[int, int]) -> int:
        """A LOAD of ``nbytes`` from the memory tile into the tile at ``at``."""
        if nbytes <= 0 or at == self._mem_at:
            return 0
        key = ("load", nbytes, at)
        hit = self._io.get(key)
        if hit is not None:
            return hit
        if self._noc is not None:
            h = abs(self._mem_at[0] - at[0]) + abs(self._mem_at[1] - at[1])
            hit = self._noc.load_cycles(nbytes, h, flit_bits=self.mesh.flit_bits)
        else:
            hit = (self.transfer_cycles(nbytes, self._mem_at, at)
                   + self.transfer_cycles(1, at, self._mem_at))
        self._io[key] = hit
        return hit

    def store_cycles(self, nbytes: int, at: tuple[int, int]) -> int:
        """A STORE of ``nbytes`` from the tile at ``at`` to the memory tile (acknowledged)."""
        if nbytes <= 0 or at == self._mem_at:
            return 0
        key = ("store", nbytes, at)
        hit = self._io.get(key)
        if hit is not None:
            return hit
        if self._noc is not None:
            h = abs(self._mem_at[0] - at[0]) + abs(self._mem_at[1] - at[1])
            hit = self._noc.store_cycles(nbytes, h, flit_bits=self.mesh.flit_bits)
        else:
            hit = (self.transfer_cycles(nbytes, at, self._mem_at)
                   + self.transfer_cycles(1, self._mem_at, at))
        self._io[key] = hit
        return hit

    def mean_comm_cycles(self, nbytes: int, srcs: Sequence[Any], dsts: Sequence[Any]) -> float:
        """Mean of :meth:`comm_cycles` over the distinct pairs of candidate units (HEFT's
        average communication cost); 0 when both sides can only be the same unit."""
        key = (id(srcs), id(dsts))
        hit = self._mean_hops.get(key)
        if hit is None or hit[0] is not srcs or hit[1] is not dsts:
            pairs = [(a, b) for a in srcs for b in dsts if a is not b]
            hops = (sum(self.mesh.hops(a.at, b.at) for a, b in pairs) / len(pairs)) if pairs else -1.0
            self._mean_hops[key] = (srcs, dsts, hops)
        else:
            hops = hit[2]
        if hops < 0 or nbytes <= 0:
            return 0.0
        if self.dataflow == "memory":
            pairs = [(a, b) for a in srcs for b in dsts if a is not b]
            return sum(self.sync_cycles(a, b) for a, b in pairs) / len(pairs)
        if self._noc is not None:
            return float(self._noc.store_cycles(nbytes, round(hops), flit_bits=self.mesh.flit_bits))
        n = self.params.noc
        return 2 * n.ni_cycles + hops * n.router_cycles + self.serialisation_cycles(nbytes)

    # -- movement ----------------------------------------------------------------------
    def serialisation_cycles(self, nbytes: int) -> int:
        """Cycles a transfer of ``nbytes`` occupies each link of its route."""
        hit = self._serial.get(nbytes)
        if hit is not None:
            return hit
        if nbytes <= 0:
            return 0
        n = self.params.noc
        flits = _cdiv(nbytes, self._bytes_per_flit)
        packets = _cdiv(flits, n.max_packet_flits)
        self._serial[nbytes] = out = flits + packets * n.packet_overhead_flits
        return out

    def transfer_cycles(self, nbytes: int, src: tuple[int, int], dst: tuple[int, int]) -> int:
        """Cycles to move ``nbytes`` from tile ``src`` to tile ``dst`` on an idle mesh
        (with ``sched/cost/noc.py``: its zero-load STORE time, acknowledgement included)."""
        if src == dst or nbytes <= 0:
            return 0
        if self._noc is not None:
            hops = abs(src[0] - dst[0]) + abs(src[1] - dst[1])
            return self._noc.store_cycles(nbytes, hops, flit_bits=self.mesh.flit_bits)
        ser = self._serial.get(nbytes)
        if ser is None:
            ser = self.serialisation_cycles(nbytes)
        return (self._fixed_cycles + (abs(src[0] - dst[0]) + abs(src[1] - dst[1])) * self._router
                + ser)

    def memory_cycles(self, unit: Any, ext_in: int, ext_out: int) -> int:
        """Loading ``ext_in`` bytes from the memory tile into ``unit`` and storing ``ext_out``
        back. A LOAD is a read request out and the data back; a STORE the data out and its
        acknowledgement back (the tile waits for both before its next command)."""
        return self.load_cycles(ext_in, unit.at) + self.store_cycles(ext_out, unit.at)


class LinkTable:
    """Link occupancy of the mesh for contention-aware scheduling.

    A transfer occupies every link of its XY route (plus the injection port of its source
    and the ejection port of its destination) for its serialisation time, all during the
    same interval (a packet's worm spans its route); it takes the earliest interval at or
    after ``ready`` in which all of them are idle (insertion into the links' gaps).
    """

    def __init__(self, cost: CostModel):
        self.cost = cost
        self._busy: dict[Any, tuple[list[int], list[int]]] = {}
        self._routes: dict[tuple, list] = {}
        #: recorded LOAD/STORE phases: (their starts, (start, end, service per cycle)),
        #: sorted by start; the longest one's length
        self._activity: tuple[list[int], list[tuple[int, int, float]]] = ([], [])
        self._longest = 0

    def _links(self, src: tuple[int, int], dst: tuple[int, int]) -> list:
        """The booking lists ``(starts, finishes)`` of every link of the route."""
        key = (src, dst)
        r = self._routes.get(key)
        if r is None:
            names = [("inj", src)] + xy_route(src, dst) + [("ej", dst)]
            r = [self._busy.setdefault(l, ([], [])) for l in names]
            self._routes[key] = r
        return r

    @staticmethod
    def _start(links: list, ready: int, dur: int) -> int:
        t = ready
        bisect_right = bisect.bisect_right
        while True:
            moved = False
            for starts, finishes in links:
                if not finishes or finishes[-1] <= t:      # idle from t on: the common case
                    continue
                i = bisect_right(finishes, t)
                n = len(starts)
                while i < n and starts[i] < t + dur:
                    # booking i overlaps [t, t + dur): move past it
                    t = finishes[i]
                    moved = True
                    i += 1
            if not moved:
                return t

    def server(self, demand: int, ready: int, book: bool = True) -> int:
        """The memory tile as one server (it serves one packet at a time, every tile's
        LOADs and STOREs alike, round robin): ``demand`` cycles of its time taken from
        ``ready`` on in whatever gaps the bookings leave (a fluid model of the packet
        interleaving); returns the cycle the last of them is served, and books them unless
        ``book`` is False."""
        if demand <= 0:
            return ready
        starts, finishes = self._busy.setdefault(("memory-server",), ([], []))
        i = bisect.bisect_right(finishes, ready)
        t, left, pieces = ready, demand, []
        while left > 0:
            if i < len(starts) and starts[i] <= t:
                t = max(t, finishes[i])
                i += 1
                continue
            gap_end = starts[i] if i < len(starts) else t + left
            take = min(left, gap_end - t)
            if take > 0:
                pieces.append((t, t + take))
                left -= take
                t += take
        if book:
            for a, b in pieces:
                k = bisect.bisect_right(starts, a)
                starts.insert(k, a)
                finishes.insert(k, b)
        return t

    def activity(self, start: int, end: int) -> float:
        """Memory-server service of the recorded phases (:meth:`record`) inside
        ``[start, end)``, each phase's service spread evenly over its interval (a tile's
        packets reach the server one at a time, spaced by their round trips)."""
        starts, rows = self._activity
        lo = bisect.bisect_left(starts, start - self._longest)
        hi = bisect.bisect_left(starts, end)
        total = 0.0
        for a, b, rate in rows[lo:hi]:
            if b > start:
                total += rate * (min(b, end) - max(a, start))
        return total

    def record(self, start: int, end: int, service: int) -> None:
        """Book a LOAD or STORE phase that used ``service`` cycles of the memory server
        between ``start`` and ``end`` (for :meth:`activity`)."""
        if end > start and service > 0:
            starts, rows = self._activity
            i = bisect.bisect_right(starts, start)
            starts.insert(i, start)
            rows.insert(i, (start, end, service / (end - start)))
            self._longest = max(self._longest, end - start)

    def interference(self, start: int, alone: int, service: int) -> int:
        """End of a LOAD or STORE phase of ``alone`` cycles (``service`` of them at the
        memory server) started at ``start``, slowed by the phases already recorded.

        The memory tile serves one packet at a time, round robin between the tiles whose
        packets wait. A tile has one command in flight, so its packets wait at the server
        a share ``service / alone`` of the phase; whatever other tiles' packets the server
        takes meanwhile delays it: ``activity(start, start + alone) * service / alone``
        cycles. Only phases booked before count (a list scheduler cannot move them), so
        of two overlapping phases the later booked one carries the delay."""
        if alone <= 0:
            return start
        return start + alone + int(self.activity(start, start + alone) * service / alone)

    def earliest(self, nbytes: int, src: tuple[int, int], dst: tuple[int, int], ready: int,
                 latency: int | None = None) -> int:
        """Arrival time of a transfer ready at ``ready``, without booking it."""
        if src == dst or nbytes <= 0:
            return ready
        start = self._start(self._links(src, dst), ready, self.cost.serialisation_cycles(nbytes))
        return start + (self.cost.transfer_cycles(nbytes, src, dst) if latency is None else latency)

    def book(self, nbytes: int, src: tuple[int, int], dst: tuple[int, int], ready: int,
             latency: int | None = None) -> int:
        """Book a transfer; returns its arrival time (its start plus ``latency``, by default
        its zero-load :meth:`CostModel.transfer_cycles`)."""
        if src == dst or nbytes <= 0:
            return ready
        links = self._links(src, dst)
        dur = self.cost.serialisation_cycles(nbytes)
        start = self._start(links, ready, dur)
        end = start + dur
        if latency is None:
            latency = self.cost.transfer_cycles(nbytes, src, dst)
        for starts, finishes in links:
            if not starts or start >= starts[-1]:
                starts.append(start)
                finishes.append(end)
            else:
                i = bisect.bisect_right(starts, start)
                starts.insert(i, start)
                finishes.insert(i, end)
        return start + latency


# -- calibration -----------------------------------------------------------------------

@dataclass(frozen=True)
class Measurement:
    """One RTL measurement: a unit (its tile config), the EXEC shape, measured cycles."""

    tile: TileConfig
    shape: Mapping[str, int]
    cycles: int


@dataclass(frozen=True)
class CalibrationResult:
    """Fitted parameters and how well they predict held-out measurements."""

    params: CostParams
    fit: Mapping[UnitKind, KindParams]
    max_rel_error: Mapping[UnitKind, float]     # on the validation half
    samples: Mapping[UnitKind, int]

    def summary(self) -> str:
        lines = []
        for k, kp in self.fit.items():
            lines.append(f"{k.key}: cycles = {kp.scale:.4f} * formula + {kp.overhead:.1f} "
                         f"({self.samples[k]} samples, max error {100 * self.max_rel_error[k]:.2f}% "
                         f"on held-out)")
        return "\n".join(lines)


def calibrate(measurements: Iterable[Measurement], base: CostParams | None = None,
              tolerance: float = 0.05) -> CalibrationResult:
    """Fit ``scale`` and ``overhead`` per unit kind to RTL cycle counts, then validate.

    Measurements of each kind are split alternately into a fit half and a validation
    half (sorted by formula value, so both span the sweep); a least-squares line
    ``measured = scale * formula + overhead`` is fitted on the first and its maximum
    relative error measured on the second.

    Raises
    ------
    CalibrationError
        If a kind has fewer than 4 measurements or a distinct formula value fewer than 2
        (the sweep cannot separate scale from overhead), or if the held-out error of a
        kind exceeds ``tolerance``.
    """
    base = base or CostParams()
    by_kind: dict[UnitKind, list[tuple[float, float]]] = {}
    for m in measurements:
        f = _call_formula(m.tile.kind, _unit_formula(m.tile.kind).cycles, m.tile, m.shape)
        by_kind.setdefault(m.tile.kind, []).append((float(f), float(m.cycles)))
    if not by_kind:
        raise CalibrationError("No measurements to calibrate from")
    kinds = dict(base.kinds)
    fit, err, count = {}, {}, {}
    for kind, pts in by_kind.items():
        pts.sort()
        if len(pts) < 4 or len({p[0] for p in pts}) < 2:
            raise CalibrationError(f"{kind.key}: {len(pts)} measurements over "
                                   f"{len({p[0] for p in pts})} distinct shapes; calibration "
                                   f"needs at least 4 over at least 2 shapes")
        train, test = pts[0::2], pts[1::2]
        x = np.array([p[0] for p in train]); y = np.array([p[1] for p in train])
        a = np.vstack([x, np.ones_like(x)]).T
        (scale, overhead), *_ = np.linalg.lstsq(a, y, rcond=None)
        kp = KindParams(float(scale), float(overhead))
        rel = max(abs(kp.scale * f + kp.overhead - c) / max(c, 1.0) for f, c in test)
        fit[kind], err[kind], count[kind] = kp, rel, len(pts)
        kinds[kind] = kp
    bad = {k: e for k, e in err.items() if e > tolerance}
    if bad:
        raise CalibrationError("Calibrated model misses held-out RTL measurements by more than "
                               f"{100 * tolerance:.1f}%: " + ", ".join(
                                   f"{k.key} {100 * e:.2f}%" for k, e in bad.items()))
    return CalibrationResult(dataclasses.replace(base, kinds=kinds), fit, err, count)


def load_measurements(path: str, config: Any = None) -> list[Measurement]:
    """Read recorded RTL measurements: a JSON list of ``{"tile": name, "shape": {...},
    "cycles": n}`` (tile names from the pool config ``config``, default pool if None)."""
    cfg = load_config(config) if config is not None else load_config()
    out = []
    for i, rec in enumerate(json.loads(open(path).read())):
        try:
            out.append(Measurement(cfg.tile(rec["tile"]), dict(rec["shape"]), int(rec["cycles"])))
        except (KeyError, TypeError, ValueError) as e:
            raise CalibrationError(f"{path}: record {i} ({rec!r}) is not "
                                   f"{{'tile': name, 'shape': {{...}}, 'cycles': n}}: {e}") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m accelpool.sched.cost.model calibrate MEASUREMENTS.json [--config CFG] [--tolerance T]``"""
    ap = argparse.ArgumentParser(prog="python -m accelpool.sched.cost.model",
                                 description="Fit and validate the cost model against RTL cycle counts")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibrate", help="fit scale/overhead per unit kind and validate on held-out")
    c.add_argument("measurements")
    c.add_argument("--config", default=None)
    c.add_argument("--tolerance", type=float, default=0.05)
    args = ap.parse_args(argv)
    try:
        res = calibrate(load_measurements(args.measurements, args.config), tolerance=args.tolerance)
    except CalibrationError as e:
        print(f"calibration failed: {e}")
        return 1
    print(res.summary())
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())
