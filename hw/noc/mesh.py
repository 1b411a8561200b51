"""A ``cols`` x ``rows`` mesh of :class:`~accelpool.hw.noc.router.Router`, generated from a :class:`MeshConfig`."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.config import MeshConfig
from accelpool.spec.isa import COORD_BITS

from ..params import check_int
from .flit import flit_layout
from .router import Port, Router

__all__ = ["Mesh", "check_mesh", "check_coord"]


def check_mesh(mesh: object) -> MeshConfig:
    """Validate that ``mesh`` is a :class:`MeshConfig` whose coordinates fit the header."""
    if not isinstance(mesh, MeshConfig):
        raise TypeError(f"Mesh must be a MeshConfig, not {mesh!r}")
    limit = 1 << COORD_BITS
    if not (1 <= mesh.cols <= limit and 1 <= mesh.rows <= limit):
        raise ValueError(f"Mesh size must be between 1x1 and {limit}x{limit}, "
                         f"not {mesh.cols}x{mesh.rows}")
    return mesh


def check_coord(mesh: MeshConfig, x: object, y: object) -> tuple[int, int]:
    """Validate that (``x``, ``y``) is a router coordinate of ``mesh``."""
    for name, v, extent in (("x", x, mesh.cols), ("y", y, mesh.rows)):
        check_int(v, f"Tile {name}", "a non-negative integer")
        if not 0 <= v < extent:
            raise ValueError(f"Tile {name} must be between 0 and {extent - 1} on a "
                             f"{mesh.cols}x{mesh.rows} mesh, not {v!r}")
    return x, y


class Mesh(wiring.Component):
    """One mesh network: a router per coordinate, neighbours linked, edges left open.

    Parameters
    ----------
    mesh : MeshConfig
        Size, flit width and buffer depth.

    Attributes
    ----------
    inject : In(stream.Signature(flit_layout)).array(rows, cols)
        ``inject[y][x]`` feeds the router at (x, y).
    eject : Out(stream.Signature(flit_layout)).array(rows, cols)
        ``eject[y][x]`` delivers the packets addressed to (x, y).
    """

    def __init__(self, mesh: MeshConfig):
        self._mesh = check_mesh(mesh)
        layout = flit_layout(mesh.flit_bits)
        super().__init__({
            "inject": In(stream.Signature(layout)).array(mesh.rows, mesh.cols),
            "eject": Out(stream.Signature(layout)).array(mesh.rows, mesh.cols),
        })

    @property
    def mesh(self) -> MeshConfig:
        return self._mesh

    def elaborate(self, platform):
        m = Module()
        cfg = self._mesh
        routers = {}
        for y in range(cfg.rows):
            for x in range(cfg.cols):
                r = Router(x=x, y=y, flit_bits=cfg.flit_bits, buffer_flits=cfg.buffer_flits)
                m.submodules[f"router_{x}_{y}"] = routers[x, y] = r
                wiring.connect(m, wiring.flipped(self.inject[y][x]), r.inject)
                wiring.connect(m, r.eject, wiring.flipped(self.eject[y][x]))
        for (x, y), r in routers.items():
            # Ports at the mesh's edge are tied off explicitly: an undriven input is 0 in
            # Verilator but X in a four-state simulator (Icarus), and X would spread.
            for port, exists in ((Port.NORTH, y > 0), (Port.SOUTH, y + 1 < cfg.rows),
                                 (Port.WEST, x > 0), (Port.EAST, x + 1 < cfg.cols)):
                if not exists:
                    m.d.comb += [r.link_in(port).valid.eq(0), r.link_in(port).flit.eq(0),
                                 r.link_out(port).credit.eq(0)]
            if x + 1 < cfg.cols:
                east = routers[x + 1, y]
                wiring.connect(m, r.link_out(Port.EAST), east.link_in(Port.WEST))
                wiring.connect(m, east.link_out(Port.WEST), r.link_in(Port.EAST))
            if y + 1 < cfg.rows:
                south = routers[x, y + 1]
                wiring.connect(m, r.link_out(Port.SOUTH), south.link_in(Port.NORTH))
                wiring.connect(m, south.link_out(Port.NORTH), r.link_in(Port.SOUTH))
        return m
