"""Generic plumbing with no knowledge of media or models: cutting an iterable into batches, the ``with``
protocol of an object released by ``close()`` and the counts of a run that writes one output per item. Written once
here so each layer above uses the same behaviour."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
C = TypeVar("C", bound="Closing")


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    """``items`` in lists of ``n`` (the last one shorter), read lazily: a stream of files or video frames is never
    held whole. (``itertools.batched`` yields tuples and needs Python 3.12.)"""
    batch: list[T] = []
    for it in items:
        batch.append(it)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


class Closing:
    """Base of an object that holds a resource until :meth:`close`: ``with obj:`` returns the object itself and
    closes it when the block ends, however it ends."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: C) -> C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RunCounts:
    """Counts of a resumable run that writes one output per input item (``forensics data import`` / ``stage``):
    the items it met, those it wrote this time and those that failed. A subclass adds its own reasons for skipping
    an item; the command reports the counts and exits 2 when any item failed."""

    total: int = 0
    written: int = 0
    failed: int = 0
