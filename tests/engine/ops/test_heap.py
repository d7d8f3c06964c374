"""Freezing long-lived objects out of the cyclic garbage collector."""

from __future__ import annotations

import gc
import weakref

from engine.ops.heap import freeze_long_lived


class _Node:
    """An object that can sit in a reference cycle and be weakly referenced."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def test_surviving_objects_are_frozen() -> None:
    """An object alive at the call is moved to the permanent generation."""
    gc.unfreeze()
    keep = _Node()
    freeze_long_lived("test")
    # frozen objects are in the permanent generation, which get_objects() (the collected ones) leaves out
    assert not any(obj is keep for obj in gc.get_objects())


def test_garbage_cycles_are_collected_not_frozen() -> None:
    """An unreachable cycle is freed by the call instead of being frozen for ever."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    probe = weakref.ref(a)
    del a, b
    freeze_long_lived("test")
    assert probe() is None
