"""TemplateStore on SQLite and on a real PostgreSQL server: enroll, delete, the change log, model binding,
migrations, crash safety (kill -9 mid-batch) and concurrent writers."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from biohash.codes import pack
from biohash.store import MIGRATIONS, StoreError, open_store


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
    assert {t[1] for t in everything.added} == {"bob"}  # alice's adds are gone with her rows
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
    from biohash.codes import pack
    from biohash.store import open_store
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
    seen = 0
    while any(w.poll() is None for w in writers):
        seen = max(seen, reader.count())
    errors = [w.stderr.read() for w in writers if w.wait() != 0]
    assert not errors, errors[0]
    assert reader.count() == 3 * 25 * 2 and len(reader.subjects()) == 75
    assert reader.changes_since(0).seq == 150
    reader.check()
