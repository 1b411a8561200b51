"""The mesh network-on-chip: flit format, router, mesh, network interface, memory tile.

==================  ==========================================================
module              holds
==================  ==========================================================
``flit``            the flit on a link and the head-flit header layout
``arbiter``         the round-robin arbiter (router outputs, shared memory ports)
``router``          one XY wormhole router with credit-based flow control
``mesh``            a ``cols`` x ``rows`` mesh of routers from a :class:`MeshConfig`
``fabric``          the request and response meshes, and how tiles attach to them
``reader``          streams flits out of a shared one-cycle-latency read port
``target``          the request server shared by network interfaces and memory
``tokens``          per-tile token counters (SIGNAL increments, WAIT consumes)
``ni``              the network interface with its DMA engine
``memory_tile``     the global memory tile with its host port
``traffic``         synthesizable traffic generators and checkers (tests, bench)
==================  ==========================================================

See ``docs/noc.md`` for the design note (deadlock freedom, ordering, latency).
"""
