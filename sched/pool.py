"""The pool manager: which units exist, what each can do, and who is busy when.

A :class:`Pool` is built from the pool config (the same file ``hw/soc`` generates the RTL
from) with :meth:`Pool.from_config`, or from a running simulation with
:func:`discover`, which reads every tile's capability registers and refuses a config that
disagrees with the hardware.

The capability registers (:mod:`accelpool.spec.capabilities`) are the contract between
the tiles and discovery: the hardware exposes what :func:`capability_registers` computes.

Allocation: :class:`PoolState` reserves units over time (one micro-op at a time per unit)
and scratchpad space (:class:`ScratchpadAllocator`); :func:`balance_report` gives the
per-unit busy share and the balance between units of the same kind.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from accelpool.sched.ir import CAPABLE_UNITS, OpType
from accelpool.spec.capabilities import (CAP_VERSION_MAJOR, GEOMETRY_KEYS, CapReg,
                                         capability_registers, describe_register)
from accelpool.spec.config import (DEFAULT_CONFIG, UNIT_DTYPES, DType, PoolConfig, TileConfig,
                                   UnitKind, load_config)
from accelpool.spec.unit import Registry, SpecTable, unit_spec

__all__ = [
    "KIND_OPS", "REFUSALS", "is_sparse",
    "Capabilities", "Unit", "Pool", "PoolError", "DiscoveryError", "UnschedulableError",
    "AllocationError", "discover",
    "ScratchpadAllocator", "PoolState", "balance_report",
]


class PoolError(ValueError):
    """A pool that cannot be built or used as asked."""


class DiscoveryError(PoolError):
    """The hardware's capability registers disagree with the pool config."""


class UnschedulableError(PoolError):
    """A micro-op that no unit of the pool supports."""


class AllocationError(PoolError):
    """A reservation that conflicts with another or does not fit the scratchpad."""


def _kind_ops(kind: UnitKind, extra: Iterable[tuple[Any, DType]] = ()) -> frozenset:
    """(operation, operand dtype) pairs a unit kind runs, from :data:`accelpool.sched.ir.CAPABLE_UNITS`."""
    return frozenset([pair for pair, kinds in CAPABLE_UNITS.items() if kind in kinds] + list(extra))


#: (OpType, DType) pairs each unit kind executes (the IR's :data:`~accelpool.sched.ir.CAPABLE_UNITS`).
KIND_OPS: Mapping[UnitKind, frozenset] = SpecTable(_kind_ops(UnitKind.MEMORY),
                                                   lambda s: _kind_ops(s.kind))


#: kind -> ``refuse(op) -> str``: why a unit of the kind cannot take a micro-op its
#: capabilities cover ('' if it can), registered beside the unit's lowering.
REFUSALS = Registry("sched", "placement refusal", builtin=("accelpool.sched.lower",))


def is_sparse(kind: UnitKind) -> bool:
    """Whether ``kind`` exploits sparsity (its cost falls with the non-zero count)."""
    return kind is not UnitKind.MEMORY and unit_spec(kind).sparse

@dataclass(frozen=True)
class Capabilities:
    """What one unit can do.

    Attributes
    ----------
    kind : UnitKind
    ops : frozenset of (OpType, DType)
        Operation and operand data type pairs the unit executes.
    dtypes : tuple of DType
        Input data types the unit was built with (``tile.dtypes``).
    sparse : bool
        Whether its cost falls with the non-zero count (SMU, GNN).
    tile_sizes : mapping
        Array geometry (``rows``/``cols``, ``oc_lanes``/``ic_lanes`` or ``lanes``).
    scratchpad_bytes : int
    """

    kind: UnitKind
    ops: frozenset
    dtypes: tuple[DType, ...]
    sparse: bool
    tile_sizes: Mapping[str, int]
    scratchpad_bytes: int

    @property
    def op_types(self) -> frozenset:
        return frozenset(o for o, _ in self.ops)

    def supports(self, op: OpType, dtype: DType) -> bool:
        """Whether the unit executes ``op`` on ``dtype`` operands."""
        return (op, dtype) in self.ops


@dataclass(frozen=True)
class Unit:
    """One tile of the pool that executes micro-ops (the memory tile runs LAYOUT ops)."""

    index: int
    tile: TileConfig
    caps: Capabilities
    name: str = field(init=False)
    kind: UnitKind = field(init=False)
    at: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        # copied from the tile once: the schedulers read them in their inner loops
        object.__setattr__(self, "name", self.tile.name)
        object.__setattr__(self, "kind", self.tile.kind)
        object.__setattr__(self, "at", self.tile.at)

    def __repr__(self) -> str:
        return f"Unit({self.name}, {self.kind.key} at {self.at})"


def _capabilities(tile: TileConfig, extra: Iterable[tuple[OpType, DType]] = ()) -> Capabilities:
    # The config restricts only the data types a kind can be built for (UNIT_DTYPES);
    # fixed extra ones (INT32 dequantisation on the AFU) stay.
    configurable = UNIT_DTYPES[tile.kind]
    ops = frozenset(p for p in _kind_ops(tile.kind, extra)
                    if p[1] in tile.dtypes or p[1] not in configurable)
    spad = tile["bytes"] if tile.kind is UnitKind.MEMORY else tile.scratchpad_bytes
    return Capabilities(
        kind=tile.kind, ops=ops, dtypes=tuple(tile.dtypes), sparse=is_sparse(tile.kind),
        tile_sizes=MappingProxyType({k: tile[k] for k in GEOMETRY_KEYS[tile.kind]}),
        scratchpad_bytes=spad)


_MATRIX_OPS = [(o, d) for o in (OpType.GEMM, OpType.SPMM, OpType.CONV, OpType.AGGREGATE)
               for d in (DType.BF16, DType.INT8, DType.FP32)]


class Pool:
    """The units of one pool config, their capabilities and positions on the mesh.

    The memory tile is a unit too: it runs the LAYOUT micro-ops (im2col).

    Parameters
    ----------
    config : PoolConfig
        The validated pool description.
    kinds : iterable of UnitKind, optional
        Keep only units of these kinds (baseline pools); all by default. The memory tile
        is always kept.
    extra_ops : mapping UnitKind -> iterable of (OpType, DType), optional
        Operations a kind takes on in a baseline pool (a DMU running an INT8 convolution
        as an im2col GEMM); the cost model prices them as the equivalent dense GEMM.
    name : str, optional
    """

    def __init__(self, config: PoolConfig, kinds: Iterable[UnitKind] | None = None,
                 extra_ops: Mapping[UnitKind, Iterable[tuple[OpType, DType]]] | None = None,
                 name: str | None = None):
        self.config = config
        self.name = name or config.name
        keep = None if kinds is None else frozenset(kinds) | {UnitKind.MEMORY}
        extra_ops = extra_ops or {}
        units = []
        for t in config.tiles:
            if keep is not None and t.kind not in keep:
                continue
            units.append(Unit(len(units), t, _capabilities(t, extra_ops.get(t.kind, ()))))
        if not any(u.kind is not UnitKind.MEMORY for u in units):
            raise PoolError(f"Pool {self.name!r} has no compute units "
                            f"(kinds kept: {sorted(k.key for k in keep) if keep else 'all'})")
        self.units: tuple[Unit, ...] = tuple(units)
        self._by_name = {u.name: u for u in self.units}
        self._cand_cache: dict[tuple, tuple[Unit, ...]] = {}
        self._refusals: dict[UnitKind, Callable[[Any], str]] = {}

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: PoolConfig | str | Path = DEFAULT_CONFIG, **kw: Any) -> "Pool":
        """Build the pool from a config object or file (see :func:`accelpool.spec.config.load_config`)."""
        if not isinstance(config, PoolConfig):
            config = load_config(config)
        return cls(config, **kw)

    @classmethod
    def dense_only(cls, config: PoolConfig | str | Path = DEFAULT_CONFIG) -> "Pool":
        """Baseline: the config's DMUs do all matrix work (plus its AFU for activations).

        The DMUs run INT8 GEMMs and convolutions (as im2col GEMMs), sparse products as
        dense ones and graph aggregation as a dense adjacency GEMM, priced as the
        equivalent dense GEMM. The AFU stays because no GEMM array computes activations,
        element-wise ops or (de)quantisation.
        """
        if not isinstance(config, PoolConfig):
            config = load_config(config)
        return cls(config, kinds=(UnitKind.DMU, UnitKind.AFU),
                   extra_ops={UnitKind.DMU: _MATRIX_OPS}, name=f"{config.name}-dense")

    @classmethod
    def dense_sparse(cls, config: PoolConfig | str | Path = DEFAULT_CONFIG) -> "Pool":
        """Baseline: DMUs and SMUs (plus the AFU); the SMU also takes graph aggregation."""
        if not isinstance(config, PoolConfig):
            config = load_config(config)
        return cls(config, kinds=(UnitKind.DMU, UnitKind.SMU, UnitKind.AFU),
                   extra_ops={UnitKind.DMU: _MATRIX_OPS,
                              UnitKind.SMU: [(OpType.AGGREGATE, DType.BF16),
                                             (OpType.AGGREGATE, DType.FP32)]},
                   name=f"{config.name}-dense+sparse")

    # -- queries -----------------------------------------------------------------------
    @property
    def mesh(self):
        return self.config.mesh

    @property
    def memory(self) -> TileConfig:
        return self.config.memory

    @property
    def memory_unit(self) -> Unit:
        return self._by_name[self.config.memory.name]

    @property
    def compute_units(self) -> tuple[Unit, ...]:
        return tuple(u for u in self.units if u.kind is not UnitKind.MEMORY)

    def __len__(self) -> int:
        return len(self.units)

    def __iter__(self):
        return iter(self.units)

    def unit(self, name: str) -> Unit:
        """The unit called ``name``."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"No unit named {name!r} in pool {self.name!r}; units: "
                           f"{', '.join(self._by_name)}") from None

    def of_kind(self, kind: UnitKind) -> tuple[Unit, ...]:
        return tuple(u for u in self.units if u.kind is kind)

    def candidates(self, op: Any, name: Any = None) -> tuple[Unit, ...]:
        """Units that support ``op``'s operation type (``op.op``) and data type, in config order.

        Raises
        ------
        UnschedulableError
            If none does; the message names the micro-op and what the pool offers.
        """
        key = (op.op, op.dtype)
        hit = self._cand_cache.get(key)
        if hit is None:
            hit = tuple(u for u in self.units if u.caps.supports(*key))
            self._cand_cache[key] = hit
        whys = {}
        for kind in sorted({u.kind for u in hit}, key=lambda k: k.value):
            refuse = self._refusals.get(kind)
            if refuse is None:
                refuse = self._refusals[kind] = REFUSALS.get(kind, _takes_all)
            if why := refuse(op):
                whys[kind] = why
        if whys:
            hit = tuple(u for u in hit if u.kind not in whys)
        why = "; ".join(whys.values())
        if not hit:
            offered = "; ".join(
                f"{u.name}: " + ", ".join(sorted(f"{o.value}<{d.key}>" for o, d in u.caps.ops))
                for u in self.units)
            label = name if name is not None else getattr(op, "id", op)
            raise UnschedulableError(f"Micro-op {label!r} ({op.op.value} on {op.dtype.key}) is "
                                     f"supported by no unit of pool {self.name!r}"
                                     f"{' (' + why + ')' if why else ''}; the pool "
                                     f"offers {offered}")
        return hit

    def hops(self, a: Unit | TileConfig | tuple[int, int], b: Unit | TileConfig | tuple[int, int]) -> int:
        """XY-routing hop count between two units/tiles/coordinates."""
        pa = a if isinstance(a, tuple) else a.at
        pb = b if isinstance(b, tuple) else b.at
        return self.mesh.hops(pa, pb)


def _takes_all(op: Any) -> str:
    return ""


# -- discovery -------------------------------------------------------------------------

def discover(config: PoolConfig | str | Path, read_register: Callable[[TileConfig, CapReg], int],
             **kw: Any) -> Pool:
    """Build the pool from the config after checking every tile's capability registers.

    Parameters
    ----------
    config : PoolConfig or path
        The pool description the hardware was supposedly built from.
    read_register : callable
        ``read_register(tile, reg) -> int`` reads capability register ``reg`` of ``tile``
        in a running simulation.

    Raises
    ------
    DiscoveryError
        Listing every register that disagrees: tile, register, what the config implies and
        what the hardware reports. A minor version difference is accepted.
    """
    if not isinstance(config, PoolConfig):
        config = load_config(config)
    problems = []
    for tile in config.tiles:
        for reg, expected in capability_registers(tile).items():
            got = read_register(tile, reg)
            if not isinstance(got, int):
                raise DiscoveryError(f"Tile {tile.name} ({tile.x},{tile.y}) register {reg.name} "
                                     f"read back {got!r}, not an integer")
            if reg is CapReg.VERSION:
                if got >> 8 != CAP_VERSION_MAJOR:
                    problems.append(f"{tile.name} ({tile.x},{tile.y}) {reg.name}: hardware "
                                    f"{describe_register(reg, got)}, this software supports "
                                    f"{CAP_VERSION_MAJOR}.x")
            elif got != expected:
                problems.append(f"{tile.name} ({tile.x},{tile.y}) {reg.name}: config says "
                                f"{describe_register(reg, expected)}, hardware reports {describe_register(reg, got)}")
    if problems:
        raise DiscoveryError(f"Pool config {config.source} disagrees with the hardware: "
                             + "; ".join(problems))
    return Pool(config, **kw)


# -- allocation ------------------------------------------------------------------------

class ScratchpadAllocator:
    """First-fit allocation of one scratchpad, in bytes aligned to ``align``.

    Raises :class:`AllocationError` naming the micro-op, the bytes asked for, the
    scratchpad's size and the largest free block when a request does not fit.
    """

    def __init__(self, size: int, name: str = "scratchpad", align: int = 32):
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"Scratchpad size must be a positive integer, not {size!r}")
        if size <= 0:
            raise ValueError(f"Scratchpad size must be a positive integer, not {size!r}")
        self.size = size
        self.name = name
        self.align = align
        self._free: list[tuple[int, int]] = [(0, size)]   # sorted (addr, length)
        self._used: dict[Any, tuple[int, int]] = {}

    @property
    def free_bytes(self) -> int:
        return sum(n for _, n in self._free)

    @property
    def largest_free(self) -> int:
        return max((n for _, n in self._free), default=0)

    def alloc(self, owner: Any, nbytes: int) -> int:
        """Reserve ``nbytes`` for ``owner``; returns the address."""
        if owner in self._used:
            raise AllocationError(f"{owner!r} already holds {self._used[owner][1]} bytes of "
                                  f"{self.name} at 0x{self._used[owner][0]:x}")
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0:
            raise ValueError(f"An allocation must be a positive number of bytes, not {nbytes!r}")
        need = -(-nbytes // self.align) * self.align
        for i, (addr, length) in enumerate(self._free):
            if length >= need:
                if length == need:
                    del self._free[i]
                else:
                    self._free[i] = (addr + need, length - need)
                self._used[owner] = (addr, need)
                return addr
        raise AllocationError(f"Micro-op {owner!r} needs {nbytes} bytes of {self.name} "
                              f"({self.size} bytes, {self.free_bytes} free, largest free block "
                              f"{self.largest_free}); it does not fit")

    def free(self, owner: Any) -> None:
        """Release ``owner``'s block, merging it with free neighbours."""
        try:
            addr, length = self._used.pop(owner)
        except KeyError:
            raise AllocationError(f"{owner!r} holds no block of {self.name}") from None
        i = bisect.bisect(self._free, (addr, length))
        self._free.insert(i, (addr, length))
        # merge with the next and the previous block
        if i + 1 < len(self._free) and addr + length == self._free[i + 1][0]:
            self._free[i] = (addr, length + self._free[i + 1][1])
            del self._free[i + 1]
        if i > 0 and self._free[i - 1][0] + self._free[i - 1][1] == addr:
            self._free[i - 1] = (self._free[i - 1][0], self._free[i - 1][1] + self._free[i][1])
            del self._free[i]

    def address(self, owner: Any) -> int:
        return self._used[owner][0]


@dataclass
class _Busy:
    starts: list[int] = field(default_factory=list)
    finishes: list[int] = field(default_factory=list)
    owners: list[Any] = field(default_factory=list)


class PoolState:
    """Reservations of a pool over time: each unit runs one micro-op at a time.

    ``reserve(unit, owner, start, finish, spad_bytes)`` books ``unit`` for
    ``[start, finish)``; a second booking that overlaps is an :class:`AllocationError`
    naming both micro-ops, and so is a micro-op whose working set exceeds the unit's
    scratchpad. ``earliest_slot`` finds the first gap of a given length (insertion policy).
    """

    def __init__(self, pool: Pool):
        self.pool = pool
        self._busy = {u.name: _Busy() for u in pool.units}

    def check_fits(self, unit: Unit, owner: Any, spad_bytes: int) -> None:
        """Reject a micro-op whose operands and result do not fit ``unit``'s scratchpad."""
        cap = unit.caps.scratchpad_bytes
        if spad_bytes > cap:
            raise AllocationError(f"Micro-op {owner!r} needs {spad_bytes} bytes of scratchpad "
                                  f"(operands and result) but {unit.name} has {cap}; decompose "
                                  f"it into smaller tiles")

    def reserve(self, unit: Unit, owner: Any, start: int, finish: int, spad_bytes: int = 0) -> None:
        if finish < start:
            raise AllocationError(f"Micro-op {owner!r} on {unit.name}: finish {finish} precedes "
                                  f"start {start}")
        self.check_fits(unit, owner, spad_bytes)
        b = self._busy[unit.name]
        i = bisect.bisect_right(b.starts, start)
        if i > 0 and b.finishes[i - 1] > start:
            raise AllocationError(f"{unit.name} is busy with {b.owners[i - 1]!r} during "
                                  f"[{b.starts[i - 1]}, {b.finishes[i - 1]}); cannot run "
                                  f"{owner!r} at [{start}, {finish})")
        if i < len(b.starts) and b.starts[i] < finish and finish > start:
            raise AllocationError(f"{unit.name} is busy with {b.owners[i]!r} during "
                                  f"[{b.starts[i]}, {b.finishes[i]}); cannot run "
                                  f"{owner!r} at [{start}, {finish})")
        b.starts.insert(i, start)
        b.finishes.insert(i, finish)
        b.owners.insert(i, owner)

    def earliest_slot(self, unit: Unit, ready: int, duration: int, insertion: bool = True) -> int:
        """The earliest start >= ``ready`` where ``unit`` is free for ``duration`` cycles."""
        b = self._busy[unit.name]
        if not b.starts:
            return ready
        if not insertion:
            return max(ready, b.finishes[-1])
        # first booking that ends after `ready`; the gaps before it are all too early
        i = bisect.bisect_right(b.finishes, ready)
        t = ready
        starts, finishes = b.starts, b.finishes
        n = len(starts)
        while i < n:
            if starts[i] - t >= duration:
                return t
            if finishes[i] > t:
                t = finishes[i]
            i += 1
        return t

    def free_at(self, unit: Unit) -> int:
        b = self._busy[unit.name]
        return b.finishes[-1] if b.finishes else 0

    def bookings(self, unit: Unit) -> list[tuple[int, int, Any]]:
        b = self._busy[unit.name]
        return list(zip(b.starts, b.finishes, b.owners))


def balance_report(pool: Pool, busy: Mapping[str, int], makespan: int) -> dict[str, float]:
    """Per-unit busy share and per-kind balance.

    Parameters
    ----------
    busy : mapping
        Busy cycles per unit name.
    makespan : int
        The schedule's length in cycles.

    Returns
    -------
    dict
        ``util.<unit>`` = busy / makespan for every unit; ``balance.<kind>`` = min/max busy
        among the units of a kind with more than one unit (1.0 = perfectly balanced);
        ``util.mean`` over the compute units.
    """
    out: dict[str, float] = {}
    span = max(makespan, 1)
    units = pool.compute_units
    for u in pool.units:
        out[f"util.{u.name}"] = busy.get(u.name, 0) / span
    out["util.mean"] = sum(busy.get(u.name, 0) for u in units) / (span * len(units))
    for kind in UnitKind:
        us = pool.of_kind(kind)
        if len(us) > 1:
            loads = [busy.get(u.name, 0) for u in us]
            out[f"balance.{kind.key}"] = (min(loads) / max(loads)) if max(loads) else 1.0
    return out
