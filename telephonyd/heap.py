"""Keeping bulk state built by a resync out of the cyclic garbage collector's full passes.

CPython's collector walks every object it tracks in a full (generation-2) collection, and one is
due each time the long-lived objects grew by a quarter. At 50,000 contacts the table, its index,
the presence machine's agents and the listings are about a million tracked objects: one full pass
held the event loop for 170 ms (``bench/ami_flood.py``, ``longest_full_gc_cpu_ms``), longer than
Asterisk waits on an AMI session it cannot write to (100 ms). The daemon freezes its heap once
after start (`telephonyd.app`), but the first resync and presence seed come after that.

So the code that builds such state calls `keep_long_lived`: between the slices of a resync or a
seed, every 2,000 items of an AMI list reply, and after every 10,000 contact changes applied.
Objects tracked then move to the permanent generation (``gc.freeze``, O(1)), and later full passes
only walk what was allocated since. What is frozen is still freed by reference counting when
dropped (contacts replaced by events, listing replies); only a reference cycle among frozen objects
stays until exit. The young generations are collected first, so short-lived cycles (futures,
tracebacks) are not frozen: after a 50,000-contact resync and flood a full collection of the
unfrozen heap finds 6 such objects (``frozen_cycles_objects`` in the bench).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def keep_long_lived() -> None:
    """Collect the young generations (a few thousand objects, well under a millisecond), then
    move every object the collector tracks into its permanent generation (``gc.freeze``)."""
    gc.collect(1)
    gc.freeze()


def take_slices(items: list[T], size: int) -> Iterator[list[T]]:
    """Yield ``items`` in order, ``size`` at a time, emptying the list as it goes.

    Each slice is freed once the caller moves to the next one: a 50,000-item listing reply
    (AMI messages) freed in one go held the event loop for about 100 ms at the end of a resync.
    The caller must hold no other reference to the list's items it wants freed.
    """
    items.reverse()
    while items:
        part = items[-size:]
        del items[-size:]
        part.reverse()
        yield part
        del part
