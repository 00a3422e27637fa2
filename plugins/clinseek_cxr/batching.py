"""Micro-batching of concurrent episodes' images into single inference calls, and the result cache.

Tools run in worker threads, one per concurrent episode. Each submits its preprocessed image and waits on a
future; one batcher thread takes the first waiting image, gathers more until `max_batch` or `wait_ms` has passed,
runs the model once on the stack and hands each caller its row. With wait_ms 0 a batch is whatever queued while
the previous one ran: no added latency when idle, large batches under load. The same image asked for twice while
in flight is inferred once. Results are cached by (model sha256, image sha256): in memory, and on disk when a folder is given.
"""
from __future__ import annotations

import json
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

import numpy as np


class ResultCache:
    """Probabilities by (model sha256, image sha256). Memory LRU, optionally backed by one small JSON per image."""

    def __init__(self, capacity: int = 4096, folder: Path | None = None):
        self.capacity = capacity
        self.folder = Path(folder) if folder else None
        self._mem: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _file(self, key: tuple[str, str]) -> Path | None:
        if self.folder is None:
            return None
        model_sha, image_sha = key
        return self.folder / model_sha[:16] / f"{image_sha}.json"

    def get(self, key: tuple[str, str]) -> np.ndarray | None:
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                self.hits += 1
                return self._mem[key]
        f = self._file(key)
        if f is not None and f.is_file():
            try:
                value = np.asarray(json.loads(f.read_text())["probabilities"], dtype=np.float64)
            except (OSError, ValueError, KeyError):
                value = None  # a damaged entry is a miss; it is rewritten below
            if value is not None:
                self._remember(key, value)
                with self._lock:
                    self.hits += 1
                return value
        with self._lock:
            self.misses += 1
        return None

    def put(self, key: tuple[str, str], value: np.ndarray) -> None:
        self._remember(key, value)
        f = self._file(key)
        if f is not None:
            try:
                f.parent.mkdir(parents=True, exist_ok=True)
                tmp = f.with_suffix(f".{threading.get_ident()}.tmp")
                tmp.write_text(json.dumps({"model_sha256": key[0], "image_sha256": key[1],
                                           "probabilities": [float(v) for v in value]}))
                tmp.replace(f)  # atomic: a reader never sees half a file
            except OSError:
                pass  # the disk cache is an optimisation; a full or read-only disk must not fail a tool call

    def _remember(self, key, value) -> None:
        with self._lock:
            self._mem[key] = value
            self._mem.move_to_end(key)
            while len(self._mem) > self.capacity:
                self._mem.popitem(last=False)


class MicroBatcher:
    """Gathers images from many threads into batches for `run_batch((N, C, H, W)) -> (N, labels)`."""

    def __init__(self, run_batch: Callable[[np.ndarray], np.ndarray], max_batch: int = 16, wait_ms: float = 0.0):
        self.run_batch = run_batch
        self.max_batch = max(1, int(max_batch))
        self.wait_s = max(0.0, wait_ms / 1000.0)
        self._queue: queue.Queue = queue.Queue()
        self._pending: dict[object, Future] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches: list[int] = []  # sizes of the batches run, for the manifest and the benchmark

    def submit(self, key: object, x: np.ndarray) -> Future:
        """Queue one preprocessed image; the future resolves to its output row. Same key in flight: same future."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            fut = self._pending.get(key)
            if fut is not None:
                return fut
            fut = Future()
            self._pending[key] = fut
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="cxr-batcher", daemon=True)
                self._thread.start()
        self._queue.put((key, x, fut))
        return fut

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            items = [item]
            deadline = time.monotonic() + self.wait_s
            while len(items) < self.max_batch:
                timeout = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                items.append(nxt)
            self._run(items)

    def _run(self, items) -> None:
        try:
            out = self.run_batch(np.stack([x for _, x, _ in items]))
            self.batches.append(len(items))
            results = [(fut, out[i], None) for i, (_, _, fut) in enumerate(items)]
        except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the failure
            results = [(fut, None, exc) for _, _, fut in items]
        with self._lock:
            for key, _, _ in items:
                self._pending.pop(key, None)
        for fut, value, exc in results:
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(value)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)
