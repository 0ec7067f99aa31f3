"""TemplateStore on SQLite and on a real PostgreSQL server: enroll, delete, the change log, model binding,
migrations, crash safety (kill -9 mid-batch) and concurrent writers."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from biohash.match.codes import pack
from biohash.serve.store import MIGRATIONS, StoreError, open_store


def _code(rng, bits=64):
    return pack(rng.integers(0, 2, (1, bits)).astype(np.uint8))


def test_enroll_delete_and_the_change_log(store_url):
    rng = np.random.default_rng(0)
    store = open_store(store_url)
    a, b = _code(rng), _code(rng)
    ids = store.enroll("alice", {"print": a, "vein": b}, "fp")
    store.enroll("bob", {"print": _code(rng)}, "fp")
    assert store.count() == 3 and store.count("print") == 2 and store.subjects() == ["alice", "bob"]
    tids, subjects, codes = store.templates(subject="alice")
    assert list(tids) == ids and subjects == ["alice", "alice"]
    assert np.array_equal(codes.bits, np.concatenate([a.bits, b.bits]))
    assert store.subjects_of([ids[1], 999]) == {ids[1]: "alice"}
    seq = store.change_counter
    assert store.delete("alice") == 2 and store.delete("alice") == 0
    changes = store.changes_since(seq)
    assert sorted(changes.removed) == sorted(ids) and not changes.added and changes.seq == seq + 2
    everything = store.changes_since(0)
    assert {t.subject for t in everything.added} == {"bob"}  # alice's adds are gone with her rows
    store.check()
    store.close()


def test_bulk_import_is_one_transaction(store_url):
    rng = np.random.default_rng(4)
    store = open_store(store_url)
    rows = [(f"s{k}", "print", _code(rng).bits[0].tobytes()) for k in range(50)]
    assert store.enroll_batch(rows, 64, "fp") == 50 and store.count() == 50
    with pytest.raises(StoreError, match="64 bits"):
        store.enroll_batch(rows[:3] + [("x", "print", b"\x00" * 16)], 64, "fp")
    assert store.count() == 50 and len(store.changes_since(0).added) == 50  # the bad batch left nothing


def test_a_store_is_bound_to_one_model(store_url):
    rng = np.random.default_rng(1)
    store = open_store(store_url)
    store.enroll("a", {"print": _code(rng)}, "model-1")
    with pytest.raises(StoreError, match="fingerprint model-1, not model-2"):
        store.enroll("b", {"print": _code(rng)}, "model-2")
    with pytest.raises(StoreError, match="n_bits 64, not 128"):
        store.enroll("b", {"print": _code(rng, 128)}, "model-1")
    with pytest.raises(StoreError, match="non-empty"):
        store.enroll("", {"print": _code(rng)}, "model-1")
    with pytest.raises(StoreError, match="one code per modality"):
        store.enroll("c", {"print": pack(np.zeros((2, 64), np.uint8))}, "model-1")
    assert store.count() == 1  # refused enrolls left nothing behind
    with pytest.raises(StoreError, match="fingerprint"):
        open_store(store_url, fingerprint="model-3")


def test_migrations_are_numbered_and_applied_once(store_url):
    store = open_store(store_url)
    assert store.schema_version == MIGRATIONS[-1][0]
    store.enroll("a", {"print": _code(np.random.default_rng(2))}, "fp")
    store.close()
    again = open_store(store_url)  # reopening runs nothing twice and keeps the data
    assert again.count() == 1 and again.schema_version == MIGRATIONS[-1][0]
    n = again._exec("SELECT COUNT(*) FROM schema_migrations").fetchone()[0]
    assert n == len(MIGRATIONS)


_ENROLLER = textwrap.dedent("""
    import sys, numpy as np
    from biohash.match.codes import pack
    from biohash.serve.store import open_store
    store = open_store(sys.argv[1])
    rng = np.random.default_rng(int(sys.argv[2]))
    for k in range(int(sys.argv[3])):
        subject = f"{sys.argv[2]}-{k}"
        store.enroll(subject, {"print": pack(rng.integers(0, 2, (1, 64)).astype(np.uint8)),
                               "vein": pack(rng.integers(0, 2, (1, 64)).astype(np.uint8))}, "fp")
        print(subject, flush=True)  # acknowledged: enroll returned, the transaction is committed
""")


def test_kill_9_mid_batch_loses_nothing_acknowledged(store_url):
    proc = subprocess.Popen([sys.executable, "-c", _ENROLLER, store_url, "7", "100000"], stdout=subprocess.PIPE,
                            text=True)
    acked = [proc.stdout.readline().strip() for _ in range(60)]
    proc.kill()  # SIGKILL in the middle of the batch
    proc.wait()
    acked += [line.strip() for line in proc.stdout if line.strip()]
    store = open_store(store_url)
    store.check()  # integrity and change-log consistency
    subjects = set(store.subjects())
    assert set(acked) <= subjects
    assert len(subjects) <= len(acked) + 1  # at most the one in flight, and then whole
    for s in subjects:
        assert len(store.templates(subject=s)[0]) == 2  # no half-written enroll


def test_concurrent_writers_and_a_reader(store_url):
    open_store(store_url).close()  # create the schema once
    writers = [subprocess.Popen([sys.executable, "-c", _ENROLLER, store_url, str(seed), "25"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for seed in range(3)]
    reader = open_store(store_url)
    seen = [0]
    while any(w.poll() is None for w in writers):
        seen.append(reader.count())
    errors = [w.stderr.read() for w in writers if w.wait() != 0]
    assert not errors, errors[0]
    # each enrollment writes print and vein in one transaction: a reader never sees half of one, nor a count
    # that goes back
    assert all(c % 2 == 0 for c in seen) and seen == sorted(seen)
    assert reader.count() == 3 * 25 * 2 and len(reader.subjects()) == 75
    assert reader.changes_since(0).seq == 150
    reader.check()


class _SlowChangeLog:
    """Wraps a store connection: pauses `delay` s right after a change is numbered, before the commit."""

    def __init__(self, conn, delay: float) -> None:
        self._c, self._delay = conn, delay

    def execute(self, sql: str, params: tuple = ()):
        out = self._c.execute(sql, params)
        if sql.startswith("INSERT INTO changes"):
            import time

            time.sleep(self._delay)
        return out

    def __getattr__(self, name):
        return getattr(self._c, name)


def _caught_up(reader, seq: int, seen: set[int]) -> int:
    changes = reader.changes_since(seq)
    seen |= {t.id for t in changes.added}
    seen -= set(changes.removed)
    return changes.seq


def test_a_late_commit_is_never_skipped_by_catch_up(store_url):
    """Writer A numbers its change first but commits last; a reader that caught up in between must still see
    A's template (PostgreSQL numbers changes at insert: on main the reader skipped it for good). SQLite lets
    one writer in at a time, so the interleaving cannot happen there."""
    import threading
    import time

    if not store_url.startswith("postgres"):
        pytest.skip("SQLite serialises writers: no change is numbered before another that commits earlier")
    rng = np.random.default_rng(5)
    open_store(store_url).close()
    slow, fast, reader = open_store(store_url), open_store(store_url), open_store(store_url)
    slow.conn = _SlowChangeLog(slow.conn, 1.5)
    late = threading.Thread(target=slow.enroll, args=("late", {"print": _code(rng)}, "fp"))
    late.start()
    time.sleep(0.5)  # A is inside its transaction, change numbered, not committed
    seen: set[int] = set()
    seq = 0
    assert late.is_alive()  # the interleaving happens: A is inside its transaction when B starts
    fast.enroll("early", {"print": _code(rng)}, "fp")
    seq = _caught_up(reader, seq, seen)
    late.join()
    seq = _caught_up(reader, seq, seen)
    assert seen == set(reader.templates()[0].tolist()) and len(seen) == 2


def test_two_writer_processes_and_a_catching_up_reader_miss_nothing(store_url):
    """Two processes enroll while a reader keeps catching up (as two `serve` replicas on one database): every
    acknowledged template reaches the reader without a restart."""
    open_store(store_url).close()
    writers = [subprocess.Popen([sys.executable, "-c", _ENROLLER, store_url, str(seed), "150"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (11, 12)]
    reader = open_store(store_url)
    seen: set[int] = set()
    seq = 0
    while any(w.poll() is None for w in writers):
        seq = _caught_up(reader, seq, seen)
    acked = [line.strip() for w in writers for line in w.stdout if line.strip()]
    assert all(w.returncode == 0 for w in writers), [w.stderr.read() for w in writers]
    seq = _caught_up(reader, seq, seen)
    ids, subjects, _ = reader.templates()
    assert len(acked) == 300 and set(subjects) == set(acked)
    assert seen == set(ids.tolist())  # 0 acknowledged templates missed


def test_catch_up_and_start_up_page_through_70000_templates(store_url, tmp_path):
    """More templates than PostgreSQL's 65,535 bind parameters: the change log and subjects_of are read in pages
    (on main, catch-up built one placeholder per template and `serve` could not start)."""
    rng = np.random.default_rng(6)
    n = 70_001
    store = open_store(store_url)
    codes = rng.integers(0, 256, (n, 4), dtype=np.uint8)
    rows = [(f"s{k}", "print", codes[k].tobytes()) for k in range(n)]
    assert store.enroll_batch(rows, 32, "fp") == n
    changes = store.changes_since(0)
    assert changes.complete and len(changes.added) == n and changes.seq == store.change_counter
    assert changes.added[-1].subject == f"s{n - 1}" and changes.added[-1].code == codes[-1].tobytes()
    assert len(store.subjects_of(range(1, n + 10))) == n
    part = store.changes_since(0, limit=12_345)
    assert not part.complete and len(part.added) == 12_345
    rest = store.changes_since(part.seq)
    assert len(part.added) + len(rest.added) == n
