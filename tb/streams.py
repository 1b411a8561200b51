"""amaranth.sim stream helpers (Glasgow's ``stream_put``/``stream_get`` pattern).

Each takes an optional pattern iterator of 0/1 (e.g. ``itertools.cycle([1, 1, 1, 0])``):
a 0 inserts an idle cycle before the transfer (source) or holds ``ready`` low (sink),
so backpressure and idle insertion are options of every stream test.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Iterator


def random_pattern(p_active: float = 0.7, seed: int = 0) -> Iterator[int]:
    """An endless random 0/1 pattern that is 1 with probability ``p_active``."""
    rng = random.Random(seed)
    while True:
        yield int(rng.random() < p_active)


async def stream_put(ctx, stream, payload: Any, pattern: Iterator[int] | None = None) -> None:
    """Send one transfer on ``stream``; waits for ``ready``."""
    if pattern is not None:
        while not next(pattern):
            await ctx.tick()
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, pattern: Iterator[int] | None = None) -> Any:
    """Receive one transfer from ``stream``; holds ``ready`` low on the pattern's 0s."""
    if pattern is not None:
        while not next(pattern):
            ctx.set(stream.ready, 0)
            await ctx.tick()
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


def always() -> Iterator[int]:
    """The pattern with no idle cycles."""
    return itertools.repeat(1)
