"""Threads joined by bounded queues: a prefetching iterator and a background writer.

The per-clip pipeline runs decoding, face tracking, the model and the encoder each in a thread of
its own; these two helpers are the only places that start such threads, so that errors cross
threads and threads stop the same way everywhere: a producer's error is re-raised in the consumer,
and closing the consumer early stops (and closes) the producer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

#: Items waiting in each inter-thread queue: enough to absorb jitter between the stages.
QUEUE_FRAMES = 8
#: Bytes of frames a queue may hold; huge (upscaled) frames get shorter queues.
QUEUE_BYTES = 256 * 2**20


def queue_length(frame_bytes: int) -> int:
    """Queue length for frames of ``frame_bytes``: 2 to :data:`QUEUE_FRAMES`, within :data:`QUEUE_BYTES`."""
    return max(2, min(QUEUE_FRAMES, QUEUE_BYTES // max(frame_bytes, 1)))

_DONE = object()


class _ThreadError:
    """A producer's exception, carried through the queue to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(iterable: Iterable, maxsize: int = QUEUE_FRAMES, name: str = "ffv-prefetch") -> Iterator:
    """Iterate ``iterable`` in a background thread, ``maxsize`` items ahead; same items, same order.

    Errors raised by the producer are re-raised here. Closing this generator early (or an error in
    the consumer) stops the producer and closes its iterator in its own thread, so a decoder's
    subprocess is always cleaned up. Used to overlap decoding and face tracking with the model.
    """
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(iterable)
        try:
            for item in iterator:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed over to the consumer, re-raised there
            put(_ThreadError(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _ThreadError):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


class BackgroundWriter:
    """Feeds ``writer.write`` from a bounded queue in a thread, so that encoding overlaps the model.

    ``put`` re-raises an error of the writer thread (e.g. ffmpeg died); leaving the ``with`` block
    waits for every queued frame to be written, or, on an exception, drops them and stops.
    """

    def __init__(self, writer: Any, maxsize: int = QUEUE_FRAMES) -> None:
        self._writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ffv-encode", daemon=True)

    def __enter__(self) -> BackgroundWriter:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _DONE or self._stop.is_set():
                    return
                self._writer.write(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            self._error = exc
            self._stop.set()

    def put(self, frame: Any) -> None:
        """Queue ``frame`` for the writer, waiting while the queue is full."""
        while True:
            if self._error is not None:
                raise self._error
            if not self._thread.is_alive():
                raise RuntimeError("the encoder thread stopped")
            try:
                self._queue.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._stop.set()
            while True:  # unblock the thread if it waits on a full queue / let it see the stop
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
        while self._thread.is_alive():
            try:
                self._queue.put(_DONE, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error

