"""MicroBatcher and ResultCache on their own (no model): batching, de-duplication, failures, disk entries."""
import threading

import numpy as np
import pytest

from clinseek_cxr.batching import MicroBatcher, ResultCache


def _double(batch: np.ndarray) -> np.ndarray:
    return batch.reshape(len(batch), -1)[:, :2] * 2


def test_concurrent_submissions_share_one_call_and_get_their_own_rows():
    calls = []

    def run(batch):
        calls.append(len(batch))
        return _double(batch)

    b = MicroBatcher(run, max_batch=8, wait_ms=200)
    barrier = threading.Barrier(8)
    results = {}

    def worker(i):
        barrier.wait()
        results[i] = b.submit(i, np.full((1, 2, 2), float(i), np.float32)).result(timeout=10)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    b.close()
    assert sum(calls) == 8 and len(calls) <= 2
    for i in range(8):
        np.testing.assert_allclose(results[i], [2 * i, 2 * i])


def test_max_batch_caps_a_batch():
    calls = []
    b = MicroBatcher(lambda x: (calls.append(len(x)), _double(x))[1], max_batch=3, wait_ms=100)
    futs = [b.submit(i, np.zeros((1, 2, 2), np.float32)) for i in range(7)]
    for f in futs:
        f.result(timeout=10)
    b.close()
    assert max(calls) <= 3 and sum(calls) == 7


def test_same_key_in_flight_is_inferred_once():
    started, release = threading.Event(), threading.Event()
    calls = []

    def run(batch):
        calls.append(len(batch))
        started.set()
        release.wait(5)
        return _double(batch)

    b = MicroBatcher(run, max_batch=4, wait_ms=0)
    f1 = b.submit("k", np.ones((1, 2, 2), np.float32))
    started.wait(5)
    f2 = b.submit("k", np.ones((1, 2, 2), np.float32))  # still running: joins the same future
    assert f1 is f2
    release.set()
    f1.result(timeout=5)
    b.close()
    assert calls == [1]


def test_a_failing_batch_fails_every_caller_and_the_batcher_goes_on():
    state = {"fail": True}

    def run(batch):
        if state["fail"]:
            raise RuntimeError("model exploded")
        return _double(batch)

    b = MicroBatcher(run, max_batch=4, wait_ms=50)
    futs = [b.submit(i, np.zeros((1, 2, 2), np.float32)) for i in range(3)]
    for f in futs:
        with pytest.raises(RuntimeError, match="exploded"):
            f.result(timeout=5)
    state["fail"] = False
    assert b.submit(9, np.ones((1, 2, 2), np.float32)).result(timeout=5).tolist() == [2.0, 2.0]
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(10, np.ones((1, 2, 2), np.float32))


def test_cache_memory_lru_and_disk(tmp_path):
    c = ResultCache(capacity=2, folder=tmp_path)
    key = ("m" * 64, "i" * 64)
    assert c.get(key) is None and c.misses == 1
    c.put(key, np.array([0.1, 0.9]))
    np.testing.assert_allclose(c.get(key), [0.1, 0.9])
    c.put(("m" * 64, "a" * 64), np.array([0.0]))
    c.put(("m" * 64, "b" * 64), np.array([0.0]))  # evicts `key` from memory; the disk still has it
    fresh = ResultCache(folder=tmp_path)
    np.testing.assert_allclose(fresh.get(key), [0.1, 0.9])
    assert fresh.hits == 1
    (tmp_path / ("m" * 16) / ("i" * 64 + ".json")).write_text("{broken")
    assert ResultCache(folder=tmp_path).get(key) is None  # a damaged entry is a miss, not a crash
