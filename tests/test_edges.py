"""Errors at the edge (issue 26): malformed files and mistyped paths give one line naming the file and the key;
a bug inside biohash is a traceback, never a user error with exit code 2."""
from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from biohash.cli import app as cli


def _run_with_config(tmp_path, text: str):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(text)
    return run


@pytest.mark.parametrize("text, named", [("", "empty"), ("recipe: cohash\nseed: 0\n", "'data'"),
                                         ("- a\n- b\n", "mapping"), ("data: [1]\nrecipe: cohash\n", "'data'"),
                                         ("data: {dataset: synthetic}\n", "'recipe'")])
def test_a_malformed_run_config_names_the_file_and_the_key(tmp_path, text, named):
    run = _run_with_config(tmp_path, text)
    r = CliRunner().invoke(cli, ["eval", str(run)])
    assert r.exit_code == 2, (r.output, r.exception)  # on main: TypeError / KeyError tracebacks
    assert "config.yaml" in r.output and named in r.output


@pytest.mark.parametrize("edit, named", [(lambda m: m.pop("modalities"), "'modalities'"),
                                         (lambda m: m.update(bits="many"), "'bits'"),
                                         (lambda m: m.pop("fingerprint"), "'fingerprint'")])
def test_a_malformed_bundle_names_the_file_and_the_key(bundle, tmp_path, edit, named):
    broken = tmp_path / "b"
    shutil.copytree(bundle, broken)
    meta = json.loads((broken / "bundle.json").read_text())
    edit(meta)
    (broken / "bundle.json").write_text(json.dumps(meta))
    r = CliRunner().invoke(cli, ["identify", "--bundle", str(broken), "--store", str(tmp_path / "t.db"), "-c",
                                 "print=00000000"])
    assert r.exit_code == 2, (r.output, r.exception)
    assert "bundle.json" in r.output and named in r.output


def test_a_bundle_that_is_not_json_names_the_file(bundle, tmp_path):
    broken = tmp_path / "b"
    shutil.copytree(bundle, broken)
    (broken / "bundle.json").write_text("{not json")
    r = CliRunner().invoke(cli, ["identify", "--bundle", str(broken), "--store", str(tmp_path / "t.db"), "-c",
                                 "print=00000000"])
    assert r.exit_code == 2 and str(broken / "bundle.json") in r.output


@pytest.mark.parametrize("command", [["delete", "alice"], ["verify", "alice", "-c", "print=00000000"],
                                     ["identify", "-c", "print=00000000"]])
def test_reading_or_deleting_refuses_a_store_that_does_not_exist(bundle, tmp_path, command):
    missing = tmp_path / "tempaltes.db"
    extra = [] if command[0] == "delete" else ["--bundle", str(bundle)]
    r = CliRunner().invoke(cli, [*command, *extra, "--store", str(missing)])
    assert r.exit_code == 2 and "does not exist" in r.output and str(missing) in r.output
    assert not missing.exists()  # on main: a new empty database was created


def test_serve_refuses_a_key_file_that_is_json(bundle, tmp_path):
    r = CliRunner().invoke(cli, ["serve", "--bundle", str(bundle), "--store", str(tmp_path / "t.db"),
                                 "--api-key-file", str(bundle / "bundle.json")])
    assert r.exit_code == 2 and "bundle.json" in r.output and "not an API key file" in r.output


def test_a_bug_inside_a_command_is_a_traceback_not_a_user_error(bundle, tmp_path, monkeypatch):
    from biohash.serve import deployment
    from biohash.serve.store import open_store

    open_store(tmp_path / "t.db").close()

    def broken(self, *args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(deployment.Deployment, "identify", broken)
    r = CliRunner().invoke(cli, ["identify", "--bundle", str(bundle), "--store", str(tmp_path / "t.db"), "-c",
                                 "print=00000000"])
    assert r.exit_code == 1 and isinstance(r.exception, ValueError)  # on main: "error: an internal bug", exit 2


def test_serve_leaves_the_process_warning_filters_alone(bundle, tmp_path, monkeypatch):
    """On main serve silenced every DeprecationWarning and third-party UserWarning for the whole process."""
    import os
    import warnings

    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(kw))
    keys = tmp_path / "keys"
    keys.write_text("3e91c07d5a2b68f4c0de\n")
    keys.chmod(0o600)
    before = list(warnings.filters)
    r = CliRunner().invoke(cli, ["serve", "--bundle", str(bundle), "--store", str(tmp_path / "t.db"),
                                 "--api-key-file", str(keys)])
    assert r.exit_code == 0 and started, r.output
    assert warnings.filters == before
    os.environ.pop("OMP_WAIT_POLICY", None)
