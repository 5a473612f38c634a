"""The resync's heap helpers: listings freed slice by slice, bulk state frozen out of full collections."""

from __future__ import annotations

import gc
import weakref

from telephonyd.heap import keep_long_lived, take_slices


class Item:
    def __init__(self, n: int) -> None:
        self.n = n


def test_take_slices_yields_in_order_and_frees_each_slice_after_use() -> None:
    items = [Item(n) for n in range(1050)]
    first = weakref.ref(items[0])
    seen: list[int] = []
    for index, part in enumerate(take_slices(items, 500)):
        if index == 1:
            assert first() is None  # the first slice is gone once the second is handed out
        seen += [item.n for item in part]
    assert seen == list(range(1050))
    assert items == []


def test_keep_long_lived_moves_tracked_objects_out_of_the_collections() -> None:
    try:
        kept = Item(1)
        assert gc.is_tracked(kept) and any(o is kept for o in gc.get_objects())
        before = gc.get_freeze_count()
        keep_long_lived()
        assert gc.get_freeze_count() > before
        assert not any(o is kept for o in gc.get_objects())  # full collections no longer walk it
        ref = weakref.ref(kept)
        del kept
        assert ref() is None  # still freed by reference counting
    finally:
        gc.unfreeze()
