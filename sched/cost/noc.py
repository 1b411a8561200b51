"""NoC transfer time: zero-load latency of packets and DMA commands, and a contention term.

Derived from the RTL's pipeline (``hw/noc``) and checked against it cycle for cycle over
sweeps of hop count, length and packet size in ``sched/cost/test_noc.py``:

- Router: one cycle per hop. A head flit injected in cycle ``t`` is offered at the
  ejection port ``hops + 1`` cycles later (the extra cycle is the source router's input
  buffer); body flits follow one per cycle.
- A DMA command occupies the network interface from acceptance until its last write is
  acknowledged or its last read response is written (the NI takes the next command only
  then), so a STORE costs its flits plus a round trip; a LOAD is bounded by the serving
  tile, which spends ``LOAD_PACKET_OVERHEAD`` cycles per packet besides its data.

All functions take plain integers, so the scheduler can call them with a
:class:`accelpool.spec.config.MeshConfig`'s fields and two tile coordinates.
"""

from __future__ import annotations

import math

__all__ = ["hops", "data_flits", "packet_count", "packet_latency", "store_cycles",
           "load_cycles", "signal_cycles", "uniform_channel_bound", "contention_latency",
           "uniform_mean_hops",
           "ROUTER_ENTRY", "STORE_OVERHEAD", "LOAD_OVERHEAD", "LOAD_PACKET_OVERHEAD"]

#: Cycles a head flit spends entering the network (the source router's input buffer).
ROUTER_ENTRY = 1
#: STORE: cycles beyond its flits and the round trip (command decode, the target's
#: write of the tail, the WRITE_ACK leaving the target, the NI seeing the ack).
STORE_OVERHEAD = 4
#: LOAD: fixed cycles beyond the round trip and the per-packet cost.
LOAD_OVERHEAD = 2
#: LOAD: cycles per packet at the serving tile besides its data flits (take the request
#: head, take the reply-address flit, send the response head, the read's one-cycle latency).
LOAD_PACKET_OVERHEAD = 4


def hops(src: tuple[int, int], dst: tuple[int, int]) -> int:
    """Router-to-router hops under XY routing (the Manhattan distance)."""
    return abs(src[0] - dst[0]) + abs(src[1] - dst[1])


def _check(name: str, value: int, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
    return value


def packet_count(length: int, max_packet_bytes: int = 64) -> int:
    """Packets a DMA command of ``length`` bytes is split into."""
    _check("length", length, 0)
    _check("max_packet_bytes", max_packet_bytes, 1)
    return math.ceil(length / max_packet_bytes)


def data_flits(length: int, flit_bits: int = 64, max_packet_bytes: int = 64) -> int:
    """Payload flits of a ``length``-byte transfer (each packet rounds up to whole flits)."""
    fb = flit_bits // 8
    full, rest = divmod(_check("length", length, 0), max_packet_bytes)
    return full * math.ceil(max_packet_bytes / fb) + math.ceil(rest / fb)


def packet_latency(hop_count: int, flits: int = 1) -> int:
    """Zero-load cycles from a packet's head being injected to its tail being ejected.

    ``hop_count + 1`` for the head (:data:`ROUTER_ENTRY` plus one cycle per hop), then
    one cycle per further flit. For one flit this is the head latency, ``hops + 1``.
    """
    _check("hop_count", hop_count, 0)
    _check("flits", flits, 1)
    return hop_count + ROUTER_ENTRY + (flits - 1)


def store_cycles(length: int, hop_count: int, *, flit_bits: int = 64,
                 max_packet_bytes: int = 64) -> int:
    """Zero-load cycles of a STORE, from its acceptance until the NI is idle again.

    Every flit (heads and data) is injected at one per cycle, the last WRITE's tail
    reaches the target (``hops + 1``), its WRITE_ACK comes back (``hops + 1``), plus
    :data:`STORE_OVERHEAD` - 2 cycles of handling. A zero-length STORE costs one cycle.
    """
    if length == 0:
        return 1
    flits = packet_count(length, max_packet_bytes) + data_flits(length, flit_bits,
                                                                max_packet_bytes)
    return flits + 2 * _check("hop_count", hop_count, 0) + STORE_OVERHEAD


def load_cycles(length: int, hop_count: int, *, flit_bits: int = 64,
                max_packet_bytes: int = 64) -> int:
    """Zero-load cycles of a LOAD, from its acceptance until the last response is written.

    The serving tile is the bottleneck: per packet :data:`LOAD_PACKET_OVERHEAD` cycles
    plus one per data flit; the request and the response each cross ``hops`` routers.
    A zero-length LOAD costs one cycle.
    """
    if length == 0:
        return 1
    return (data_flits(length, flit_bits, max_packet_bytes)
            + LOAD_PACKET_OVERHEAD * packet_count(length, max_packet_bytes)
            + 2 * _check("hop_count", hop_count, 0) + LOAD_OVERHEAD)


def signal_cycles() -> int:
    """A SIGNAL occupies the NI for one cycle (it is sent only once the NI is quiet; the
    wait for earlier commands is part of their own cost). It reaches the destination's
    token counter ``packet_latency(hops) + 2`` cycles after it is sent."""
    return 1


def uniform_channel_bound(cols: int, rows: int) -> float:
    """Ideal saturation throughput (flits/node/cycle) of uniform random traffic under XY.

    The busiest channel crosses the mesh's bisection: with ``k`` nodes along a dimension,
    a per-node injection rate ``r`` loads the middle channel with ``r * k / 4`` (``k``
    even) flits per cycle, so throughput is bounded by ``4 / max(cols, rows)`` (and by
    1, the injection port). Wormhole flow control with input FIFOs reaches a fraction of
    this (head-of-line blocking); ``bench/bench_noc.py`` measures it.
    """
    k = max(_check("cols", cols, 1), _check("rows", rows, 1))
    if k == 1:
        return 1.0
    bisection = 4 / k if k % 2 == 0 else 4 * k / (k * k - 1)
    return min(1.0, bisection)


def contention_latency(mean_hops: float, flits: int, load: float, saturation: float,
                       source_cycles: int = 0) -> float:
    """Mean latency (cycles) from a packet's creation at its source to its head's ejection,
    at an offered ``load`` in flits/node/cycle.

    ``source_cycles`` (the time from creation to being offered for injection: 1 for the
    HDL traffic generators' queue) plus the zero-load head latency ``mean_hops + 1`` plus
    an M/D/1 wait: packets of
    ``flits`` flits arrive at random (Bernoulli sources) at a server (the source's
    injection and the bottleneck channel, seen together) whose utilisation is
    ``rho = load / saturation``; the mean wait is ``rho * flits / (2 * (1 - rho))``.
    Infinite at or beyond ``saturation``. ``bench/bench_noc.py`` prints it beside the
    measured curve (with ``saturation`` the measured saturation throughput): on a 4x4
    mesh it is within 15% of the RTL up to 80% of saturation and about 20% at 90%.
    """
    if load < 0 or saturation <= 0 or mean_hops < 0:
        raise ValueError(f"mean_hops and load must be >= 0 and saturation > 0, not "
                         f"{mean_hops!r}, {load!r}, {saturation!r}")
    _check("flits", flits, 1)
    rho = load / saturation
    if rho >= 1:
        return math.inf
    return source_cycles + mean_hops + ROUTER_ENTRY + rho * flits / (2 * (1 - rho))


def uniform_mean_hops(cols: int, rows: int) -> float:
    """Mean XY hop count between two distinct nodes chosen uniformly (the uniform pattern)."""
    nodes = [(x, y) for y in range(rows) for x in range(cols)]
    if len(nodes) < 2:
        return 0.0
    total = sum(hops(a, b) for a in nodes for b in nodes)
    return total / (len(nodes) * (len(nodes) - 1))
