"""Direct tests of small modules the rest of the suite only reached through others: the registry, the
user-folder adapters and the store's connection wrappers."""
from __future__ import annotations

import sqlite3

import cv2
import numpy as np
import pytest

from biohash.errors import UnknownNameError
from biohash.registry import Registry


def test_registry_names_aliases_and_clear_errors():
    reg: Registry = Registry("widget")

    @reg.register("round", aliases=("circle",))
    def round_widget(size: int = 3, colour: str = "red"):
        return (size, colour)

    assert reg.canonical("circle") == "round" and reg.get("circle") is round_widget and reg.aliases("round") == ["circle"]
    assert "circle" in reg and "square" not in reg and 3 not in reg and reg.names("r*") == ["round"]
    assert reg.create("circle", size=5, colour=None) == (5, "red")  # None falls back to the default
    with pytest.raises(UnknownNameError, match="unknown widget 'square'; expected one of: round"):
        reg.get("square")
    with pytest.raises(UnknownNameError, match="takes no option 'weight'; it accepts: size, colour"):
        reg.create("round", weight=2)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("circle")(round_widget)  # an alias is taken too


def _png(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (40, 40), dtype=np.uint8))


def test_folder_adapter_reads_identity_folders_modality_folders_and_a_manifest(tmp_path):
    from biohash.train.data.folders import folder, unlabeled_images

    _png(tmp_path / "ann" / "a.png", 0)
    _png(tmp_path / "ann" / "b.png", 1)
    _png(tmp_path / "bob" / "vein" / "c.png", 2)
    ds = folder(str(tmp_path))
    got = sorted((s.identity, s.modality, s.capture) for s in ds.samples)
    assert got == [("ann", "print", 0), ("ann", "print", 1), ("bob", "vein", 0)]
    assert ds.load(ds.samples[0]).shape == (40, 40)
    (tmp_path / "m.csv").write_text("path,identity,modality,session\nann/a.png,p1,print,2\n"
                                    f"{tmp_path / 'bob' / 'vein' / 'c.png'},p1,vein,\n")
    listed = folder(str(tmp_path / "m.csv"))  # root may be the manifest itself
    assert [(s.identity, s.modality, s.session) for s in listed.samples] == [("p1", "print", 2), ("p1", "vein", 1)]
    assert len(unlabeled_images(str(tmp_path)).samples) == 3


@pytest.mark.parametrize("text, message", [("path,identity\na.png,x\n", "lacks column"),
                                           ("path,identity,modality\na.png,,print\n", ":2: empty identity"),
                                           ("path,identity,modality,session\na.png,x,print,two\n", "session must be")])
def test_a_bad_manifest_names_the_file_line_and_problem(tmp_path, text, message):
    from biohash.train.data.datasets import DatasetError
    from biohash.train.data.folders import folder

    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DatasetError, match=message):
        folder(manifest=str(tmp_path / "m.csv"))
    with pytest.raises(DatasetError, match="manifest not found"):
        folder(manifest=str(tmp_path / "none.csv"))


def test_the_sqlite_wrapper_keeps_transactions_its_own(tmp_path):
    """Autocommit underneath, explicit BEGIN / COMMIT / ROLLBACK on top: a rolled back write leaves nothing,
    commit and rollback outside a transaction do nothing, a script runs statement by statement."""
    from biohash.serve.store_conn import _SqliteConn

    conn = _SqliteConn(sqlite3.connect(str(tmp_path / "c.db"), isolation_level=None))
    conn.executescript("CREATE TABLE t (x INTEGER); CREATE INDEX tx ON t (x);")
    conn.commit()
    conn.rollback()  # no transaction open: nothing happens, nothing raises
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
    conn.rollback()
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (?)", (3,))
    conn.commit()
    other = sqlite3.connect(str(tmp_path / "c.db"))
    assert other.execute("SELECT x FROM t").fetchall() == [(3,)]  # committed: another connection sees it
    conn.close()


def test_the_public_api_resolves_every_name_and_import_biohash_stays_torch_free():
    """Everything in biohash.__all__ is reachable from the top (serve and train names on first use), and
    importing the package alone imports no torch."""
    import subprocess
    import sys

    import biohash

    code = "import sys, biohash; assert 'torch' not in sys.modules; biohash.Deployment; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in biohash.__all__:
        assert getattr(biohash, name) is not None, name
    assert biohash.train_run.__module__ == "biohash.train.train_job" and set(biohash.__all__) <= set(dir(biohash))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        biohash.nope  # noqa: B018
