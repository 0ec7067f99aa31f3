"""API key files, scopes, subject ids and the rate limiter (biohash.serve.access)."""
from __future__ import annotations

import warnings

import pytest

from biohash.errors import BiohashError
from biohash.serve.access import (
    DEFAULT_SCOPES,
    KeyFileError,
    RateLimiter,
    check_subject,
    parse_keys,
    read_api_keys,
    read_protection_key,
)


def test_key_files_ignore_comments_and_blank_lines_and_refuse_short_keys():
    keys = parse_keys("# operators\n\n  k3y-for-the-door-0001   # front door\nk3y-for-the-scanner-2 enroll,match,codes\n")
    assert [k.secret for k in keys] == ["k3y-for-the-door-0001", "k3y-for-the-scanner-2"]
    assert keys[0].scopes == DEFAULT_SCOPES and keys[1].scopes == {"enroll", "match", "codes"}
    assert "#" not in "".join(k.secret for k in keys)  # on main "# operators" became a valid key
    with pytest.raises(KeyFileError, match="line 1: key has 1 characters; at least 16"):
        parse_keys("x\n")
    with pytest.raises(KeyFileError, match="unknown scope 'admin'"):
        parse_keys("k3y-for-the-door-0001 admin\n")
    with pytest.raises(KeyFileError, match="no API key"):
        parse_keys("# nothing but a comment\n\n")
    assert keys[0].id != keys[1].id and keys[0].secret not in keys[0].id


def test_world_readable_key_files_warn(tmp_path):
    path = tmp_path / "keys"
    path.write_text("k3y-for-the-door-0001\n")
    path.chmod(0o644)
    with pytest.warns(UserWarning, match="can be read by other users"):
        read_api_keys(path)
    path.chmod(0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_api_keys(path)) == 1
    protection = tmp_path / "protect.hex"
    protection.write_text("# revoked 2026-11: 00ff\n" + "ab" * 16 + "\n")
    protection.chmod(0o600)
    assert read_protection_key(protection) == bytes.fromhex("ab" * 16)
    protection.write_text("abcd\n")
    with pytest.raises(KeyFileError, match="2 bytes; at least 16"):
        read_protection_key(protection)


@pytest.mark.parametrize("bad", ["", "a/b", "a\x00b", "a\nb", "-lead", "x" * 129, "é", 7])
def test_subject_ids_outside_the_rule_are_refused(bad):
    with pytest.raises(BiohashError, match="not allowed"):
        check_subject(bad)


def test_subject_ids_inside_the_rule_pass():
    for ok in ("alice", "p-0001", "user@example.org", "a.b_c:d+e", "x" * 128):
        assert check_subject(ok) == ok


def test_rate_limiter_counts_a_sliding_minute_per_key():
    limit = RateLimiter(2)
    assert limit.wait_needed("a", 0.0) == 0 and limit.wait_needed("a", 10.0) == 0
    assert limit.wait_needed("a", 20.0) == pytest.approx(40.0)  # third in the minute: wait for the first to age
    assert limit.wait_needed("b", 20.0) == 0  # another key has its own budget
    assert limit.wait_needed("a", 60.0) == 0  # the first request left the window
    assert RateLimiter(0).wait_needed("a", 0.0) == 0
