"""Who may do what on the REST service: API keys with scopes, per-key rate limits, key files, subject ids.

A key file holds one key per line, optionally followed by its scopes: `KEY` or `KEY enroll,match,codes`.
Spaces or tabs separate a key from its scopes. Blank lines, lines starting with "#" and " # comments" after a
key are ignored; a UTF-8 byte-order mark is dropped; keys shorter than MIN_KEY_LENGTH, predictable ones (below
MIN_KEY_BITS of empirical entropy), non-ASCII ones and a key listed twice are refused; a file that other users
can read draws a warning. Scopes:

- enroll  enroll and delete subjects
- match   verify and identify (answers: decision and a coarse score band)
- codes   send raw hex codes instead of images (lets a caller probe bit by bit: give it to trusted devices only)
- scores  the operator's: exact distances and thresholds, identify's nearest non-matches, 404 for unknown subjects

A key without scopes gets DEFAULT_SCOPES (enroll, match): with neither `codes` nor `scores`, a caller can
neither craft codes nor read distances, so flipping bits to rebuild a template is impossible.
"""
from __future__ import annotations

import hashlib
import math
import re
import stat
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from biohash.errors import BiohashError

SCOPES = ("enroll", "match", "codes", "scores")
DEFAULT_SCOPES = frozenset({"enroll", "match"})
MIN_KEY_LENGTH = 16
MIN_KEY_BITS = 34  # empirical entropy (key_entropy_bits): 16 random hex digits fell below it in 0 of 100,000 draws
SUBJECT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}")
SUBJECT_RULE = "1-128 characters from A-Z a-z 0-9 . _ @ : + -, starting with a letter or digit"


class KeyFileError(BiohashError):
    """A key file that cannot be used as it is."""


def check_subject(subject: object) -> str:
    """A subject id as stored and routed (URL path segment, log line): refuse anything outside SUBJECT_RULE."""
    if not isinstance(subject, str) or not SUBJECT_PATTERN.fullmatch(subject):  # not repeated: error bodies never
        raise BiohashError(f"subject id not allowed: use {SUBJECT_RULE}")          # echo a caller's input
    return subject


@dataclass(frozen=True)
class ApiKey:
    secret: str
    scopes: frozenset[str] = DEFAULT_SCOPES

    @property
    def id(self) -> str:
        """A name for logs that does not reveal the key: the first 8 hex digits of its SHA-256."""
        return hashlib.sha256(self.secret.encode()).hexdigest()[:8]


def key_entropy_bits(secret: str) -> float:
    """Empirical entropy of a key in bits: length x the Shannon entropy of its character frequencies. A crude
    lower bar (it cannot see a dictionary word), but `aaaaaaaaaaaaaaaa` scores 0, `abcdabcdabcdabcd` 32 and
    16 random hex digits 35-64."""
    n = len(secret)
    counts = [secret.count(c) for c in set(secret)]
    return -n * sum(c / n * math.log2(c / n) for c in counts) if n else 0.0


def _check_secret(secret: str, where: str) -> None:
    if len(secret) < MIN_KEY_LENGTH:
        raise KeyFileError(f"{where}: key has {len(secret)} characters; at least {MIN_KEY_LENGTH} are needed")
    if not secret.isascii() or not secret.isprintable():
        raise KeyFileError(f"{where}: key has characters other than printable ASCII (a byte-order mark or a "
                           f"control character?)")
    if key_entropy_bits(secret) < MIN_KEY_BITS:
        raise KeyFileError(f"{where}: key is too predictable ({key_entropy_bits(secret):.0f} bits by its character "
                           f"frequencies, at least {MIN_KEY_BITS} needed): use e.g. `openssl rand -hex 24`")


def parse_keys(text: str, where: str = "key file") -> list[ApiKey]:
    """Keys of a key file: whitespace (spaces or tabs) separates a key from its scopes; a UTF-8 byte-order mark
    at the start is dropped; a key listed twice, a short, predictable or non-ASCII key are refused."""
    text = text.removeprefix("\ufeff")
    if text.lstrip().startswith(("{", "[")):
        raise KeyFileError(f"{where}: not an API key file (it starts like JSON); expected one KEY [SCOPES] a line")
    keys: dict[str, tuple[int, ApiKey]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = re.split(r"\s#", line, maxsplit=1)[0].strip()  # a comment may follow the key and its scopes
        if not line or line.startswith("#"):
            continue
        secret, *rest = line.split(None, 1)
        scopes = frozenset(s for s in re.split(r"[,\s]+", "".join(rest)) if s) or DEFAULT_SCOPES
        unknown = sorted(scopes - set(SCOPES))
        if unknown:
            raise KeyFileError(f"{where} line {n}: unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
        _check_secret(secret, f"{where} line {n}")
        if secret in keys:
            raise KeyFileError(f"{where} line {n}: the same key as line {keys[secret][0]} (each key once, with all "
                               f"its scopes)")
        keys[secret] = (n, ApiKey(secret, scopes))
    if not keys:
        raise KeyFileError(f"{where}: no API key in it (one key per line; '#' starts a comment)")
    return [k for _, k in keys.values()]


def read_secret_file(path: str | Path) -> str:
    """Text of a secret file (API keys, protection key); warns when other users may read it."""
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"key file not found: {path}")
    if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.warn(f"{path} can be read by other users: chmod 600 {path}", stacklevel=2)
    return path.read_text()


def read_api_keys(path: str | Path) -> list[ApiKey]:
    return parse_keys(read_secret_file(path), str(path))


def read_protection_key(path: str | Path) -> bytes:
    """The protection key: hex on the first line that is not blank or a comment."""
    lines = [ln.strip() for ln in read_secret_file(path).splitlines() if ln.strip() and not ln.strip().startswith("#")]
    try:
        key = bytes.fromhex(lines[0]) if lines else b""
    except ValueError:
        raise KeyFileError(f"{path}: the protection key must be hex") from None
    if len(key) < MIN_KEY_LENGTH:
        raise KeyFileError(f"{path}: the protection key has {len(key)} bytes; at least {MIN_KEY_LENGTH} are needed")
    return key


@dataclass
class RateLimiter:
    """At most `per_minute` requests per key in any 60 s window (0: no limit)."""

    per_minute: int
    _seen: dict[str, deque] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_needed(self, key_id: str, now: float | None = None, count: bool = True) -> float:
        """0 when the request may go ahead (and it is counted, unless count=False), else the seconds until it
        may."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._seen.setdefault(key_id, deque())
            while times and now - times[0] >= 60.0:
                times.popleft()
            if len(times) >= self.per_minute:
                return 60.0 - (now - times[0])
            if count:
                times.append(now)
            return 0.0
