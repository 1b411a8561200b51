"""Synthesizable traffic generators and checkers, and a mesh wrapped with them.

Used by the cocotb traffic tests and the NoC benchmark: the simulator runs the whole
traffic experiment in HDL, and Python only sets the knobs, waits, and reads the totals,
so long runs go at simulator speed.

:class:`TrafficGenerator` (one per node) makes a packet with probability ``rate / 65536``
per cycle (Bernoulli), picks its destination by :class:`Pattern`, stamps it with the
cycle it was made and queues it (a full queue drops the new packet and counts it in
``dropped``); it sends the queue's packets back to back. A packet is a WRITE head whose
``addr`` holds a per-destination sequence number (bits 0-15) and the creation stamp
(bits 16-31), then ``payload_flits`` flits each carrying :func:`fingerprint` of (source,
destination, sequence, index).

:class:`TrafficChecker` (one per ejection port) stalls at random (``stall / 65536`` of
the cycles it is not ready) and counts an error for: a body flit outside a packet, a head
inside one, a packet for another node, a sequence number other than the next one expected
from that source (lost, duplicated or reordered packets), a payload flit whose
fingerprint is wrong, a packet of the wrong length. With the per-source sequence check, a
run whose totals of sent and received packets agree and whose error count is zero
delivered every packet exactly once, intact and in order per source-destination pair.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.config import MeshConfig

from .flit import Header, PacketType, flit_layout
from .mesh import Mesh, check_mesh

__all__ = ["Pattern", "TrafficGenerator", "TrafficChecker", "TrafficMesh", "fingerprint",
           "Xorshift"]


class Pattern(enum.Enum, shape=2):
    """Destination patterns."""

    #: Any other node, uniformly.
    UNIFORM = 0
    #: (x, y) sends to (y, x); nodes on the diagonal do not send.
    TRANSPOSE = 1
    #: The hotspot with probability ``hot_frac / 256``, else uniform.
    HOTSPOT = 2
    #: A random one of the existing north/east/south/west neighbours.
    NEIGHBOUR = 3


class Xorshift(wiring.Component):
    """A 32-bit xorshift generator that steps every cycle; ``seed`` is taken while ``load``."""

    def __init__(self):
        super().__init__({"value": Out(32), "seed": In(32), "load": In(1)})

    def elaborate(self, platform):
        m = Module()
        s = Signal(32, init=0x2545F491)
        a = Signal(32)
        b = Signal(32)
        c = Signal(32)
        m.d.comb += [a.eq(s ^ (s << 13)[:32]), b.eq(a ^ (a >> 17)), c.eq(b ^ (b << 5)[:32]),
                     self.value.eq(s)]
        with m.If(self.load):
            m.d.sync += s.eq(self.seed | 1)
        with m.Else():
            m.d.sync += s.eq(c)
        return m


def fingerprint(src_index, dst_index, seq, index, bits: int):
    """The expected contents of payload flit ``index`` (an Amaranth expression)."""
    tag = Cat(seq[:16], index[:8], src_index[:8])
    other = Cat(dst_index[:8], index[:8], seq[:16]) ^ 0x5A3C_96E1
    word = Cat(tag, other)
    return word.replicate(max(1, bits // 64))[:bits]


def _node(mesh: MeshConfig, x: int, y: int):
    """Node (x, y)'s mesh: ``cols, rows``, the node count, flit bytes and the node's index."""
    cols, rows = mesh.cols, mesh.rows
    return cols, rows, cols * rows, mesh.flit_bits // 8, y * cols + x


def _random(m, seed, load_seed):
    """A :class:`Xorshift` submodule ``rng`` taking ``seed`` on ``load_seed``; its value."""
    m.submodules.rng = rng = Xorshift()
    m.d.comb += [rng.seed.eq(seed), rng.load.eq(load_seed)]
    return rng.value


def _index(m, x, y, cols, name):
    idx = Signal(8, name=name)
    m.d.comb += idx.eq(y * cols + x)
    return idx


class TrafficGenerator(wiring.Component):
    """Packet source for node (x, y); see the module docstring."""

    QUEUE = 16
    #: A queued packet: its destination and creation stamp.
    ENTRY = data.StructLayout({"dst": 8, "stamp": 16})

    def __init__(self, mesh: MeshConfig, x: int, y: int):
        self._mesh = check_mesh(mesh)
        self._x, self._y = x, y
        super().__init__({
            "out": Out(stream.Signature(flit_layout(mesh.flit_bits))),
            "enable": In(1), "rate": In(17), "payload_flits": In(8), "pattern": In(Pattern),
            "hot_x": In(4), "hot_y": In(4), "hot_frac": In(9), "seed": In(32),
            "now": In(32), "clear": In(1), "load_seed": In(1),
            "generated": Out(32), "dropped": Out(32), "sent": Out(32), "sent_flits": Out(32),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        *_, me = _node(self._mesh, self._x, self._y)
        r = _random(m, self.seed ^ (me * 0x9E3779B9 & 0xFFFFFFFF), self.load_seed)
        m.submodules.queue = q = fifo.SyncFIFO(width=self.ENTRY.size, depth=self.QUEUE)
        makes = self._maker(m, q, r)
        self._counters(m, q, makes)
        self._sender(m, q)
        return m

    def _maker(self, m, q, r):
        """Makes a packet with probability ``rate / 65536`` a cycle, its destination by
        ``pattern``, into the queue ``q``; returns the signal high in a cycle that makes one."""
        cols, rows, n, _, me = _node(self._mesh, self._x, self._y)
        dst = Signal(8)
        makes = Signal()
        uniform = Signal(8)
        if n > 1:
            pick = (r[:8] * (n - 1)) >> 8          # 0 .. n-2, then skip ourselves
            if me:
                m.d.comb += uniform.eq(Mux(pick >= me, pick + 1, pick))
            else:
                m.d.comb += uniform.eq(pick + 1)
        else:
            m.d.comb += uniform.eq(me)
        m.d.comb += makes.eq(self.enable & (r[8:24] < self.rate))
        with m.Switch(self.pattern):
            with m.Case(Pattern.UNIFORM):
                m.d.comb += dst.eq(uniform)
            with m.Case(Pattern.TRANSPOSE):
                tx, ty = self._y % cols, self._x % rows
                m.d.comb += dst.eq(ty * cols + tx)
                if (tx, ty) == (self._x, self._y):
                    m.d.comb += makes.eq(0)
            with m.Case(Pattern.HOTSPOT):
                with m.If(r[24:32] < self.hot_frac):
                    m.d.comb += dst.eq(self.hot_y * cols + self.hot_x)
                with m.Else():
                    m.d.comb += dst.eq(uniform)
            with m.Case(Pattern.NEIGHBOUR):
                options = []
                for dx, dy in ((0, -1), (1, 0), (0, 1), (-1, 0)):
                    nx, ny = self._x + dx, self._y + dy
                    if not (0 <= nx < cols and 0 <= ny < rows):
                        nx, ny = self._x - dx, self._y - dy   # reflect at the edge
                    if not (0 <= nx < cols and 0 <= ny < rows):
                        nx, ny = self._x, self._y             # a 1-wide mesh: loop back
                    options.append(ny * cols + nx)
                m.d.comb += dst.eq(Array(Const(o, 8) for o in options)[r[26:28]])
        new = Signal(self.ENTRY)
        m.d.comb += [new.dst.eq(dst), new.stamp.eq(self.now[:16]),
                     q.w_data.eq(new), q.w_en.eq(makes)]
        return makes

    def _counters(self, m, q, makes):
        """The ``generated``, ``dropped``, ``sent`` and ``sent_flits`` totals."""
        with m.If(self.clear):
            m.d.sync += [self.generated.eq(0), self.dropped.eq(0), self.sent.eq(0),
                         self.sent_flits.eq(0)]
        with m.Else():
            with m.If(makes):
                m.d.sync += self.generated.eq(self.generated + 1)
                with m.If(~q.w_rdy):
                    m.d.sync += self.dropped.eq(self.dropped + 1)
            with m.If(self.out.valid & self.out.ready):
                m.d.sync += self.sent_flits.eq(self.sent_flits + 1)
                with m.If(self.out.payload.tail):
                    m.d.sync += self.sent.eq(self.sent + 1)

    def _sender(self, m, q):
        """Sends the queue's packets back to back: a WRITE head with the per-destination
        sequence number and the stamp, then ``payload_flits`` fingerprinted flits."""
        cfg = self._mesh
        cols, _, n, fb, me = _node(cfg, self._x, self._y)
        xs = Array(Const(i % cols, 4) for i in range(n))
        ys = Array(Const(i // cols, 4) for i in range(n))
        seqs = Array(Signal(16, name=f"seq_{i}") for i in range(n))
        head_entry = data.View(self.ENTRY, q.r_data)
        cur_dst = Signal(8)
        cur_seq = Signal(16)
        idx = Signal(8)
        hdr = Signal(Header)
        hdr_len = Signal(13)
        m.d.comb += [
            hdr_len.eq(self.payload_flits * fb),
            # One expression (constant fields on their own stay X in Icarus).
            hdr.as_value().eq(Cat(xs[head_entry.dst], ys[head_entry.dst], Const(self._x, 4),
                                  Const(self._y, 4), Const(PacketType.WRITE.value, 3), hdr_len,
                                  seqs[head_entry.dst], head_entry.stamp)),
        ]
        with m.FSM():
            with m.State("HEAD"):
                m.d.comb += [self.out.valid.eq(q.r_rdy), self.out.payload.data.eq(hdr),
                             self.out.payload.head.eq(1),
                             self.out.payload.tail.eq(self.payload_flits == 0),
                             q.r_en.eq(self.out.ready),
                             self.idle.eq(~q.r_rdy)]
                with m.If(q.r_rdy & self.out.ready):
                    m.d.sync += [seqs[head_entry.dst].eq(seqs[head_entry.dst] + 1),
                                 cur_dst.eq(head_entry.dst), cur_seq.eq(seqs[head_entry.dst]),
                                 idx.eq(0)]
                    with m.If(self.payload_flits != 0):
                        m.next = "BODY"
            with m.State("BODY"):
                m.d.comb += [self.out.valid.eq(1),
                             self.out.payload.data.eq(
                                 fingerprint(Const(me, 8), cur_dst, cur_seq, idx, cfg.flit_bits)),
                             self.out.payload.tail.eq(idx + 1 == self.payload_flits)]
                with m.If(self.out.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx + 1 == self.payload_flits):
                        m.next = "HEAD"


class TrafficChecker(wiring.Component):
    """Packet sink and checker for node (x, y); see the module docstring."""

    def __init__(self, mesh: MeshConfig, x: int, y: int):
        self._mesh = check_mesh(mesh)
        self._x, self._y = x, y
        super().__init__({
            "inp": In(stream.Signature(flit_layout(mesh.flit_bits))),
            "stall": In(17), "seed": In(32), "now": In(32), "clear": In(1), "load_seed": In(1),
            "packets": Out(32), "flits": Out(32), "errors": Out(32),
            "lat_sum": Out(48), "lat_max": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._mesh
        cols, rows, n, fb, me = _node(cfg, self._x, self._y)
        r = _random(m, self.seed ^ ((me + 101) * 0x85EBCA6B & 0xFFFFFFFF), self.load_seed)
        m.d.comb += self.inp.ready.eq(r[:16] >= self.stall)

        f = self.inp.payload
        hdr = data.View(Header, f.data[:Header.size])
        expected = Array(Signal(16, name=f"expect_{i}") for i in range(n))
        in_packet = Signal()
        cur_src = Signal(8)
        cur_seq = Signal(16)
        idx = Signal(8)
        want = Signal(8)
        src = Signal(8)
        m.d.comb += src.eq(hdr.src_y * cols + hdr.src_x)
        seq = hdr.addr[:16]
        stamp = hdr.addr[16:32]
        latency = Signal(16)
        m.d.comb += latency.eq(self.now[:16] - stamp)
        bad = Signal()
        take = self.inp.valid & self.inp.ready

        with m.If(f.head):
            m.d.comb += bad.eq(in_packet | (hdr.dst_x != self._x) | (hdr.dst_y != self._y)
                               | (hdr.src_x >= cols) | (hdr.src_y >= rows)
                               | (expected[src] != seq)
                               | (hdr.type != PacketType.WRITE)
                               | (f.tail & (hdr.length != 0)))
        with m.Else():
            m.d.comb += bad.eq(~in_packet
                               | (f.data[:cfg.flit_bits] != fingerprint(cur_src, Const(me, 8),
                                                                        cur_seq, idx,
                                                                        cfg.flit_bits))
                               | (f.tail & (idx + 1 != want)) | (~f.tail & (idx + 1 == want)))

        with m.If(take):
            with m.If(f.head):
                m.d.sync += [expected[src].eq(seq + 1), cur_src.eq(src), cur_seq.eq(seq),
                             idx.eq(0), want.eq(hdr.length // fb), in_packet.eq(~f.tail)]
            with m.Else():
                m.d.sync += idx.eq(idx + 1)
                with m.If(f.tail):
                    m.d.sync += in_packet.eq(0)
            with m.If(bad):
                m.d.sync += self.errors.eq(self.errors + 1)
        with m.If(self.clear):
            m.d.sync += [self.packets.eq(0), self.flits.eq(0), self.lat_sum.eq(0),
                         self.lat_max.eq(0)]
        with m.Elif(take):
            m.d.sync += self.flits.eq(self.flits + 1)
            with m.If(f.head):
                m.d.sync += [self.packets.eq(self.packets + 1),
                             self.lat_sum.eq(self.lat_sum + latency)]
                with m.If(latency > self.lat_max):
                    m.d.sync += self.lat_max.eq(latency)
        return m


def _sum(terms):
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


class TrafficMesh(wiring.Component):
    """A :class:`~accelpool.hw.noc.mesh.Mesh` with a generator and a checker at every node.

    Inputs are broadcast to all nodes; outputs are totals over the nodes (``lat_max`` is
    the maximum). ``now`` counts cycles since reset. Pulse ``clear`` to restart the
    statistics (not the sequence numbers) after a warm-up or between runs; generators
    and checkers take ``seed`` (mixed with their node number) on ``load_seed``.
    ``idle`` is high when every generator's queue is empty.
    """

    def __init__(self, mesh: MeshConfig):
        self._mesh = check_mesh(mesh)
        super().__init__({
            "enable": In(1), "rate": In(17), "payload_flits": In(8), "pattern": In(Pattern),
            "hot_x": In(4), "hot_y": In(4), "hot_frac": In(9), "seed": In(32),
            "stall": In(17), "clear": In(1), "load_seed": In(1),
            "now": Out(32), "idle": Out(1),
            "generated": Out(32), "dropped": Out(32), "sent": Out(32), "sent_flits": Out(32),
            "received": Out(32), "received_flits": Out(32), "errors": Out(32),
            "lat_sum": Out(48), "lat_max": Out(16),
        })

    @property
    def mesh(self) -> MeshConfig:
        return self._mesh

    def elaborate(self, platform):
        m = Module()
        cfg = self._mesh
        m.submodules.mesh = mesh = Mesh(cfg)
        m.d.sync += self.now.eq(self.now + 1)
        gens, chks = [], []
        for y in range(cfg.rows):
            for x in range(cfg.cols):
                g = TrafficGenerator(cfg, x, y)
                c = TrafficChecker(cfg, x, y)
                m.submodules[f"gen_{x}_{y}"] = g
                m.submodules[f"chk_{x}_{y}"] = c
                wiring.connect(m, g.out, mesh.inject[y][x])
                wiring.connect(m, mesh.eject[y][x], c.inp)
                for name in ("enable", "rate", "payload_flits", "pattern", "hot_x", "hot_y",
                             "hot_frac", "seed", "clear", "load_seed"):
                    m.d.comb += getattr(g, name).eq(getattr(self, name))
                m.d.comb += g.now.eq(self.now)
                for name in ("stall", "seed", "clear", "load_seed"):
                    m.d.comb += getattr(c, name).eq(getattr(self, name))
                m.d.comb += c.now.eq(self.now)
                gens.append(g)
                chks.append(c)
        # Totals are registered (one cycle late) to keep the adder trees off the network's paths.
        for name in ("generated", "dropped", "sent", "sent_flits"):
            m.d.sync += getattr(self, name).eq(_sum([getattr(g, name) for g in gens]))
        for out, name in (("received", "packets"), ("received_flits", "flits"),
                          ("errors", "errors"), ("lat_sum", "lat_sum")):
            m.d.sync += getattr(self, out).eq(_sum([getattr(c, name) for c in chks]))
        lat_max = chks[0].lat_max
        for i, c in enumerate(chks[1:]):
            step = Signal(16, name=f"lat_max_{i}")   # a signal per step: no expression blow-up
            m.d.comb += step.eq(Mux(c.lat_max > lat_max, c.lat_max, lat_max))
            lat_max = step
        m.d.sync += [self.lat_max.eq(lat_max),
                     self.idle.eq(_all([g.idle for g in gens]))]
        return m


def _all(terms):
    out = terms[0]
    for t in terms[1:]:
        out = out & t
    return out
