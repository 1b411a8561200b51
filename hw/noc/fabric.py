"""The two physical networks of the pool: requests and responses on separate meshes.

WRITE, READ_REQ and SIGNAL packets travel on the request mesh, READ_RESP and WRITE_ACK
on the response mesh. Since the response mesh's packets are always consumed at their
destination without waiting for anything on the request mesh, requests can never block
the responses they wait for (``docs/noc.md``). :func:`attach_ni` and
:func:`attach_memory` wire a tile's interface to its coordinate.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.config import MeshConfig

from .flit import flit_layout
from .mesh import Mesh, check_mesh

__all__ = ["Fabric", "attach_ni", "attach_memory"]


class Fabric(wiring.Component):
    """A request mesh and a response mesh of the same size.

    Attributes
    ----------
    req_inject, resp_inject : In(stream.Signature(flit_layout)).array(rows, cols)
    req_eject, resp_eject : Out(stream.Signature(flit_layout)).array(rows, cols)
        Indexed ``[y][x]``.
    """

    def __init__(self, mesh: MeshConfig):
        self._mesh = check_mesh(mesh)
        sig = stream.Signature(flit_layout(mesh.flit_bits))
        super().__init__({
            "req_inject": In(sig).array(mesh.rows, mesh.cols),
            "req_eject": Out(sig).array(mesh.rows, mesh.cols),
            "resp_inject": In(sig).array(mesh.rows, mesh.cols),
            "resp_eject": Out(sig).array(mesh.rows, mesh.cols),
        })

    @property
    def mesh(self) -> MeshConfig:
        return self._mesh

    def elaborate(self, platform):
        m = Module()
        m.submodules.requests = req = Mesh(self._mesh)
        m.submodules.responses = resp = Mesh(self._mesh)
        for y in range(self._mesh.rows):
            for x in range(self._mesh.cols):
                wiring.connect(m, wiring.flipped(self.req_inject[y][x]), req.inject[y][x])
                wiring.connect(m, req.eject[y][x], wiring.flipped(self.req_eject[y][x]))
                wiring.connect(m, wiring.flipped(self.resp_inject[y][x]), resp.inject[y][x])
                wiring.connect(m, resp.eject[y][x], wiring.flipped(self.resp_eject[y][x]))
        return m


def attach_ni(m: Module, fabric: Fabric, ni) -> None:
    """Connect a :class:`~accelpool.hw.noc.ni.NetworkInterface` to the fabric at its coordinate."""
    x, y = ni.x, ni.y
    wiring.connect(m, ni.req_out, fabric.req_inject[y][x])
    wiring.connect(m, fabric.req_eject[y][x], ni.req_in)
    wiring.connect(m, ni.resp_out, fabric.resp_inject[y][x])
    wiring.connect(m, fabric.resp_eject[y][x], ni.resp_in)


def attach_memory(m: Module, fabric: Fabric, tile) -> None:
    """Connect a :class:`~accelpool.hw.noc.memory_tile.MemoryTile` to the fabric at its coordinate.

    The memory tile serves requests and injects the SIGNALs of its command stream; it
    never receives a response: its response ejection port is always ready.
    """
    x, y = tile.x, tile.y
    wiring.connect(m, fabric.req_eject[y][x], tile.req_in)
    wiring.connect(m, tile.resp_out, fabric.resp_inject[y][x])
    wiring.connect(m, tile.req_out, fabric.req_inject[y][x])
    m.d.comb += fabric.resp_eject[y][x].ready.eq(1)
