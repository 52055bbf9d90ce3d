"""Generic plumbing with no knowledge of media or models: cutting an iterable into batches and the ``with``
protocol of an object released by ``close()``. Written once here so each layer above uses the same behaviour."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
