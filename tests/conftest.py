"""Shared fixtures: where the real sample data lives, and a fixed torch thread count for tests."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server on 127.0.0.1 from the machine's server binaries (run as the postgres user
    when the tests run as root); yields a function that creates a fresh database and returns its URL."""
    import glob
    import os
    import shutil
    import subprocess
    import tempfile

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = bins[-1] if bins else shutil.which("initdb")
    if initdb is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql")
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg not installed")
    bindir = Path(initdb).parent
    root = Path(tempfile.mkdtemp(prefix="biohash-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    def run(*cmd):
        return subprocess.run(as_user + list(cmd), check=True, capture_output=True, text=True)
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "biohash", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    except subprocess.CalledProcessError as err:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {err.stderr.strip()[:200]}")
    base = f"postgresql://biohash@127.0.0.1:{port}"
    counter = iter(range(10**6))

    def new_database() -> str:
        name = f"t{next(counter)}"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{base}/{name}"

    yield new_database
    subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                   capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Each store test runs against SQLite and a real PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "templates.db")
    return request.getfixturevalue("postgres_server")()


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    """A tiny co-hashing model (print + vein, 32 bits) trained for 2 epochs and exported: what the service
    tests serve."""
    from typer.testing import CliRunner

    from biohash.cli import app as cli

    runs = tmp_path_factory.mktemp("runs")
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "cohash", "-b", "16", "--bits", "32", "--model", "tiny", "--name", "m",
                                 "--epochs", "2", "--identities", "24", "--captures", "4", "--image-size", "64",
                                 "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["export", str(runs / "m")])
    assert result.exit_code == 0, result.output
    return runs / "m" / "export"


@pytest.fixture(scope="session")
def fixed(bundle, tmp_path_factory):
    """The bundle with a known threshold for every mode: the tiny model's validation split is too small to
    reach FAR 1e-3, and without a threshold only operator keys may match."""
    import json
    import shutil

    fixed = tmp_path_factory.mktemp("fixed") / "bundle"
    shutil.copytree(bundle, fixed)
    meta = json.loads((fixed / "bundle.json").read_text())
    meta["thresholds"] = {m: {"0.001": 8} for m in ("print", "vein", "fused", "cross", "cross-rev")}
    (fixed / "bundle.json").write_text(json.dumps(meta))
    return fixed
