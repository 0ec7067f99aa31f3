"""Deployment, REST service and the enroll/verify/identify/delete commands on a tiny exported model: the four
modes, API keys, bad inputs (always a 4xx), cancellable templates, and a bounded load test on 127.0.0.1."""
from __future__ import annotations

import base64
import concurrent.futures
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from biohash.cli import app as cli
from biohash.serve.access import SCOPES, ApiKey

KEY = "test-key-0123456789"


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def _palm(identity: int, capture: int, modality: str) -> np.ndarray:
    from biohash.train.data.datasets import open_dataset

    ds = open_dataset("synthetic", identities=identity + 1, captures=capture + 1, size=64, seed=11)
    return ds.load(next(s for s in ds.samples if s.identity == ds.identities()[identity]
                        and s.capture == capture and s.modality == modality))


def _hex(bits: np.ndarray) -> str:
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


@pytest.fixture
def client(fixed, tmp_path):
    from biohash.serve.deployment import Deployment
    from biohash.serve.service import create_app

    dep = Deployment.from_bundle(fixed, tmp_path / "t.db")
    operator = ApiKey(KEY, frozenset(SCOPES))  # these tests drive the service with raw codes and read distances
    return TestClient(create_app(dep, [operator, "second-key"], max_body_bytes=200_000),
                      raise_server_exceptions=False)


H = {"X-API-Key": KEY}


def test_api_keys(client):
    assert client.get("/health").status_code == 200
    assert client.post("/v1/identify", json={"codes": {"print": "00" * 4}}).status_code == 401
    assert client.post("/v1/identify", json={"codes": {"print": "00" * 4}},
                       headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/v1/identify", json={"codes": {"print": "00" * 4}},
                       headers={"X-API-Key": "second-key"}).status_code == 403  # default scopes: no raw codes
    assert client.get("/openapi.json").json()["info"]["title"] == "biohash"


def test_four_modes_with_codes(client):
    rng = np.random.default_rng(0)
    people = {f"p{k}": (rng.integers(0, 2, 32), rng.integers(0, 2, 32)) for k in range(20)}
    for name, (pr, vn) in people.items():
        r = client.post("/v1/enroll", json={"subject": name, "codes": {"print": _hex(pr), "vein": _hex(vn)}}, headers=H)
        assert r.status_code == 200 and len(r.json()["template_ids"]) == 2
    pr, vn = people["p7"]
    near_print = pr.copy()
    near_print[:2] ^= 1  # two bits off
    r = client.post("/v1/verify", json={"subject": "p7", "codes": {"print": _hex(near_print)}}, headers=H).json()
    assert r["mode"] == "print" and r["distance"] == 2.0 and r["threshold"] == 8 and r["match"] is True
    far = client.post("/v1/verify", json={"subject": "p7", "codes": {"print": _hex(1 - pr)}}, headers=H).json()
    assert far["distance"] == 32.0 and far["match"] is False
    # cross: a print probe against the enrolled vein template
    r = client.post("/v1/verify", json={"subject": "p7", "codes": {"print": _hex(vn)}, "against": "vein"},
                    headers=H).json()
    assert r["mode"] == "cross" and r["distance"] == 0.0 and r["match"] is True
    r = client.post("/v1/verify", json={"subject": "p7", "codes": {"print": _hex(pr), "vein": _hex(vn)}},
                    headers=H).json()
    assert r["mode"] == "fused" and r["distance"] == 0.0
    for probe, against, mode in (({"print": _hex(near_print)}, None, "print"), ({"vein": _hex(vn)}, None, "vein"),
                                 ({"print": _hex(pr), "vein": _hex(vn)}, None, "fused"),
                                 ({"vein": _hex(pr)}, "print", "cross-rev")):
        r = client.post("/v1/identify", json={"codes": probe, "against": against, "k": 3}, headers=H).json()
        assert r["candidates"][0]["subject"] == "p7" and r["candidates"][0]["mode"] == mode
        assert len(r["candidates"]) == 3
    assert client.delete("/v1/subjects/p7", headers=H).json()["deleted"] == 2
    r = client.post("/v1/identify", json={"codes": {"print": _hex(pr)}}, headers=H).json()
    assert all(c["subject"] != "p7" for c in r["candidates"])  # the matcher caught up with the delete


def test_images_json_and_multipart(client):
    img0, img1 = _palm(0, 0, "print"), _palm(0, 1, "print")
    r = client.post("/v1/enroll", json={"subject": "alice", "images": {"print": base64.b64encode(_png(img0)).decode(),
                                                                       "vein": base64.b64encode(_png(_palm(0, 0, "vein"))).decode()}},
                    headers=H)
    assert r.status_code == 200, r.text
    r = client.post("/v1/upload/verify", data={"subject": "alice"}, files={"print": ("p.png", _png(img0))}, headers=H)
    assert r.status_code == 200 and r.json()["distance"] == 0.0  # the enrolled image itself
    r = client.post("/v1/upload/enroll", data={"subject": "bob"}, files={"print": ("p.png", _png(_palm(1, 0, "print")))},
                    headers=H)
    assert r.status_code == 200
    r = client.post("/v1/upload/identify", data={"k": "2"}, files={"print": ("p.png", _png(img1))}, headers=H)
    assert r.status_code == 200 and {c["subject"] for c in r.json()["candidates"]} == {"alice", "bob"}


def test_bad_inputs_are_4xx_never_500(client):
    good = {"print": "00" * 4}
    cases = [
        ("/v1/enroll", {"subject": "x", "images": {"print": base64.b64encode(b"not an image").decode()}}, 400, "readable"),
        ("/v1/enroll", {"subject": "x", "images": {"print": "***"}}, 400, "base64"),
        ("/v1/enroll", {"subject": "x", "codes": {"iris": "00" * 4}}, 400, "unknown modality"),
        ("/v1/enroll", {"subject": "x", "codes": {"print": "00" * 8}}, 400, "64 bits"),
        ("/v1/enroll", {"subject": "x", "codes": {"print": "zz"}}, 400, "hex"),
        ("/v1/enroll", {"subject": "x"}, 400, "either"),
        ("/v1/enroll", {"codes": good}, 422, ""),
        ("/v1/verify", {"subject": "nobody", "codes": good}, 404, "no print template"),
        ("/v1/verify", {"subject": "x", "codes": good, "against": "iris"}, 400, "unknown 'against'"),
        ("/v1/identify", {"codes": good, "k": 0}, 422, ""),
    ]
    for path, body, status, text in cases:
        r = client.post(path, json=body, headers=H)
        assert r.status_code == status, (path, body, r.text)
        assert text in r.text and "Traceback" not in r.text
    r = client.post("/v1/upload/enroll", data={"subject": "x"}, files={"print": ("p.png", b"")}, headers=H)
    assert r.status_code == 400 and "empty image" in r.text
    r = client.post("/v1/upload/enroll", data={"subject": "x"}, headers=H)
    assert r.status_code == 400
    r = client.post("/v1/enroll", content=b"{" + b" " * 300_000 + b"}", headers={**H, "Content-Type": "application/json"})
    assert r.status_code == 413
    r = client.post("/v1/enroll", content=b"{not json", headers={**H, "Content-Type": "application/json"})
    assert r.status_code == 422
    assert client.delete("/v1/subjects/ghost", headers=H).status_code == 404


def test_protected_templates_are_cancellable(bundle, tmp_path):
    from biohash.serve.deployment import Deployment

    rng = np.random.default_rng(3)
    code = {"print": _hex(rng.integers(0, 2, 32))}
    old = Deployment.from_bundle(bundle, tmp_path / "p.db", key=b"deployment key #1 (revoked)")
    old.enroll("carol", old.codes_from_hex(code))
    assert old.verify("carol", old.codes_from_hex(code)).distance == 0.0
    new = Deployment.from_bundle(bundle, tmp_path / "p.db", key=b"deployment key #2 (current)")
    assert new.verify("carol", new.codes_from_hex(code)).distance > 4  # the old template no longer matches
    new.store.delete("carol")
    new.enroll("carol", new.codes_from_hex(code))  # re-enrolled under the new key
    assert new.verify("carol", new.codes_from_hex(code)).distance == 0.0
    assert new.store.templates(subject="carol")[2].bits.tobytes() != bytes.fromhex(code["print"])  # stored protected


def test_cli_enroll_verify_identify_delete(bundle, tmp_path):
    runner = CliRunner()
    store = str(tmp_path / "cli.db")
    paths = {}
    for k in range(2):
        paths[k] = tmp_path / f"palm{k}.png"
        cv2.imwrite(str(paths[k]), _palm(k, 0, "print"))
    for k in range(2):
        r = runner.invoke(cli, ["enroll", f"s{k}", "--bundle", str(bundle.parent), "--store", store, "-i",
                                f"print={paths[k]}"])
        assert r.exit_code == 0, r.output
    # without a threshold at the asked FAR the decision is "unknown", exit 3, and the answer says which FARs
    # do have one; with one, a match (exit 0)
    import json
    import shutil

    for thresholds, verdict, code in (({"0.01": 5}, "thresholds exist at FAR 0.01", 3),
                                      ({}, "the model has no threshold for this mode", 3),
                                      ({"0.001": 5}, "threshold 5.0 at FAR 0.001: match", 0)):
        variant = tmp_path / f"bundle-{len(thresholds)}-{code}"
        shutil.copytree(bundle, variant)
        meta = json.loads((variant / "bundle.json").read_text())
        meta["thresholds"] = {"print": thresholds}
        (variant / "bundle.json").write_text(json.dumps(meta))
        r = runner.invoke(cli, ["verify", "s0", "--bundle", str(variant), "--store", store, "-i", f"print={paths[0]}"])
        assert r.exit_code == code and "distance 0.0 bits" in r.output and verdict in r.output, r.output
    r = runner.invoke(cli, ["identify", "--bundle", str(bundle), "--store", store, "-i", f"print={paths[1]}", "-k", "2"])
    rows = {line.split("\t")[0]: line.split("\t")[1:3] for line in r.output.splitlines()}
    assert r.exit_code == 0 and rows["s1"] == ["0.0", "print"] and "s0" in rows  # the enrolled image itself
    r = runner.invoke(cli, ["enroll", "s2", "--bundle", str(bundle), "--store", store, "-i", "print"])
    assert r.exit_code == 2 and "MODALITY=PATH" in r.output
    assert runner.invoke(cli, ["delete", "s0", "--store", store]).exit_code == 0
    r = runner.invoke(cli, ["delete", "s0", "--store", store])
    assert r.exit_code == 2 and "no templates" in r.output


def test_load_against_the_real_server(bundle, tmp_path):
    import httpx

    from biohash.serve.service import wait_until_healthy
    from conftest import _free_port

    port = _free_port()
    (tmp_path / "keys").write_text(f"# operator key of the load test\n\n{KEY} enroll,match,codes,scores\n")
    (tmp_path / "keys").chmod(0o600)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "biohash.cli", "serve", "--bundle", str(bundle), "--store",
                               str(tmp_path / "load.db"), "--port", str(port), "--api-key-file",
                               str(tmp_path / "keys")], env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, server)
        rng = np.random.default_rng(4)
        codes = [_hex(rng.integers(0, 2, 32)) for _ in range(50)]
        with httpx.Client(base_url=base, headers=H, timeout=10) as c:
            for k, code in enumerate(codes):
                assert c.post("/v1/enroll", json={"subject": f"u{k}", "codes": {"print": code}}).status_code == 200

        def identify(k: int) -> tuple[int, str]:
            with httpx.Client(base_url=base, headers=H, timeout=10) as c:
                r = c.post("/v1/identify", json={"codes": {"print": codes[k % 50]}, "k": 1})
                return r.status_code, r.json()["candidates"][0]["subject"]

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(identify, range(200)))
        assert all(status == 200 for status, _ in results)
        assert all(subject == f"u{k % 50}" for k, (_, subject) in enumerate(results))
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_serve_starts_over_70000_templates_on_postgresql(bundle, postgres_server):
    """`serve` catches up from the store at start-up; on main it could not start past 65,535 PostgreSQL
    templates (one bind parameter per template)."""
    import json

    from biohash.serve.deployment import Deployment
    from biohash.serve.store import open_store

    url = postgres_server()
    fp = json.loads((bundle / "bundle.json").read_text())["fingerprint"]
    codes = np.random.default_rng(8).integers(0, 256, (70_001, 4), dtype=np.uint8)
    open_store(url).enroll_batch([(f"s{k}", "print", c.tobytes()) for k, c in enumerate(codes)], 32, fp)
    dep = Deployment.from_bundle(bundle, url)
    assert dep.health()["templates"] == 70_001
    top = dep.identify({"print": dep.codes_from_hex({"print": codes[54_321].tobytes().hex()})["print"]}, k=1)
    assert top[0]["subject"] == "s54321" and top[0]["distance"] == 0


# ---- hardening: what an attacker or a careless client tried (issue 14) -------------------------------------

LIMITED = "limited-key-0123456789"  # default scopes: enroll + match with images, decisions and bands only


@pytest.fixture
def hardened(fixed, tmp_path):
    from biohash.serve.deployment import Deployment
    from biohash.serve.service import create_app

    dep = Deployment.from_bundle(fixed, tmp_path / "h.db")
    app = create_app(dep, [ApiKey(KEY, frozenset(SCOPES)), LIMITED], max_body_bytes=400_000)
    return TestClient(app, raise_server_exceptions=False)


def _rebuild_by_bit_flips(client, headers, subject: str, bits: int = 32) -> np.ndarray | None:
    """The attack that found the leak: probe with raw codes, read exact distances, flip one bit at a time."""
    guess, found = np.zeros(bits, np.uint8), np.zeros(bits, np.uint8)

    def distance(code):
        r = client.post("/v1/verify", json={"subject": subject, "codes": {"print": _hex(code)}}, headers=headers)
        return r.json().get("distance") if r.status_code == 200 else None

    base = distance(guess)
    if base is None:
        return None
    for b in range(bits):
        flipped = guess.copy()
        flipped[b] ^= 1
        d = distance(flipped)
        if d is None:
            return None
        found[b] = 1 if d < base else 0
    return found


def test_a_default_key_cannot_rebuild_a_template(hardened):
    secret = np.random.default_rng(9).integers(0, 2, 32).astype(np.uint8)
    assert hardened.post("/v1/enroll", json={"subject": "victim", "codes": {"print": _hex(secret)}},
                         headers=H).status_code == 200
    assert np.array_equal(_rebuild_by_bit_flips(hardened, H, "victim"), secret)  # the operator scope can
    limited = {"X-API-Key": LIMITED}
    assert _rebuild_by_bit_flips(hardened, limited, "victim") is None  # no raw codes, so no bit to flip
    r = hardened.post("/v1/verify", json={"subject": "victim", "codes": {"print": _hex(secret)}}, headers=limited)
    assert r.status_code == 403 and "'codes' scope" in r.json()["detail"]
    img = base64.b64encode(_png(_palm(0, 0, "print"))).decode()
    assert hardened.post("/v1/enroll", json={"subject": "alice", "images": {"print": img}},
                         headers=limited).status_code == 200
    r = hardened.post("/v1/verify", json={"subject": "alice", "images": {"print": img}}, headers=limited).json()
    assert set(r) == {"subject", "mode", "match", "band"} and r["band"] == "high"  # no distance, no threshold
    found = hardened.post("/v1/identify", json={"images": {"print": img}, "k": 100}, headers=limited).json()
    assert found["candidates"][0]["subject"] == "alice"
    assert all("distance" not in c for c in found["candidates"])


def _chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(w: int, h: int, pixels: bool = True) -> bytes:
    """A valid grey PNG of w x h black pixels, about 1,000 times smaller than its pixels (or only its header)."""
    import struct
    import zlib

    z = zlib.compressobj(9)
    row = b"\x00" * (w + 1)
    idat = _chunk(b"IDAT", b"".join(z.compress(row) for _ in range(h)) + z.flush()) if pixels else b""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + idat
            + _chunk(b"IEND", b""))


def test_image_bombs_are_refused_before_decoding(hardened):
    bomb = _png_bomb(10_000, 10_000)  # 100 MP in about 100 kB
    assert len(bomb) < 150_000
    r = hardened.post("/v1/enroll", json={"subject": "bomb", "images": {"print": base64.b64encode(bomb).decode()}},
                      headers=H)
    assert r.status_code == 413 and "100,000,000 pixels" in r.json()["detail"]
    r = hardened.post("/v1/upload/enroll", data={"subject": "bomb"}, files={"print": ("b.png", bomb)}, headers=H)
    assert r.status_code == 413
    header_only = _png_bomb(50_000, 50_000, pixels=False)  # 2.5 gigapixels declared, none sent
    r = hardened.post("/v1/upload/verify", data={"subject": "bomb"}, files={"print": ("b.png", header_only)},
                      headers=H)
    assert r.status_code == 413 and hardened.get("/health").status_code == 200


def test_ids_images_and_error_bodies_are_checked(hardened):
    palm = _png(_palm(0, 0, "print"))
    for bad in ("a/b", "a\x00b", "a\nb", "../x", " lead", "x" * 129):
        r = hardened.post("/v1/upload/enroll", data={"subject": bad}, files={"print": ("p.png", palm)}, headers=H)
        assert r.status_code == 400 and "not allowed" in r.json()["detail"], (bad, r.text)
    r = hardened.post("/v1/upload/enroll", data={"subject": "x" * 10_000}, files={"print": ("p.png", palm)}, headers=H)
    assert r.status_code == 400 and len(r.text) < 400
    assert hardened.delete("/v1/subjects/a%0Ab", headers=H).status_code == 400
    for img, why in ((np.full((1, 1), 200, np.uint8), "at least 32x32"), (np.full((64, 64), 128, np.uint8), "blank")):
        r = hardened.post("/v1/upload/enroll", data={"subject": "flat"}, files={"print": ("p.png", _png(img))},
                          headers=H)
        assert r.status_code == 400 and why in r.json()["detail"]
    secret = base64.b64encode(palm).decode()
    r = hardened.post("/v1/enroll", json={"subject": 5, "images": {"print": secret}, "k": [1] * 50}, headers=H)
    assert r.status_code == 422 and "\n" not in r.text and secret[:40] not in r.text and len(r.text) < 400


def test_rate_limit_and_audit_lines(fixed, tmp_path, caplog):
    import logging

    from biohash.serve.deployment import Deployment
    from biohash.serve.service import create_app

    client = TestClient(create_app(Deployment.from_bundle(fixed, tmp_path / "r.db"), [LIMITED], rate_limit=3),
                        raise_server_exceptions=False)
    img = base64.b64encode(_png(_palm(1, 0, "print"))).decode()
    headers = {"X-API-Key": LIMITED}
    with caplog.at_level(logging.INFO, logger="biohash.audit"):
        assert client.post("/v1/enroll", json={"subject": "dana", "images": {"print": img}}, headers=headers).status_code == 200
        assert client.post("/v1/verify", json={"subject": "dana", "images": {"print": img}}, headers=headers).status_code == 200
        assert client.post("/v1/identify", json={"images": {"print": img}}, headers=headers).status_code == 200
        r = client.post("/v1/identify", json={"images": {"print": img}}, headers=headers)
        client.delete("/v1/subjects/x%0Aforged audit line", headers=headers)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "biohash.audit"]
    assert len(lines) == 5 and not any("\n" in line for line in lines)  # no line forged through a path
    assert "POST /v1/verify" in lines[1] and "subject=dana" in lines[1] and "decision=match" in lines[1]
    assert "status=429" in lines[3] and all(img[:40] not in line and LIMITED not in line for line in lines)


def test_fuzz_malformed_requests_never_5xx_and_never_echo(hardened):
    """120+ malformed requests: every answer a 4xx with a one-line body that does not repeat the input."""
    rng = np.random.default_rng(14)
    mark = "ECHO-4242"
    values = [None, 0, -1, 10**12, 3.5, True, "", mark, mark * 50, [mark], {"x": mark}, "\x00" + mark,
              base64.b64encode(b"GIF89a" + mark.encode()).decode(), "zz" + mark]
    fields = ["subject", "images", "codes", "against", "k", mark]
    routes = ["/v1/enroll", "/v1/verify", "/v1/identify"]
    answers = []
    for n in range(150):
        route = routes[n % 3]
        headers = H if n % 2 else {"X-API-Key": LIMITED}
        kind = n % 5
        if kind == 0:  # random JSON objects with wrong types
            body = {str(rng.choice(fields)): values[int(rng.integers(len(values)))] for _ in range(int(rng.integers(1, 4)))}
            r = hardened.post(route, json=body, headers=headers)
        elif kind == 1:  # modality maps with junk
            m = str(rng.choice(["print", "vein", mark, ""]))
            body = {"subject": "s1", str(rng.choice(["images", "codes"])): {m: values[int(rng.integers(len(values)))]}}
            r = hardened.post(route, json=body, headers=headers)
        elif kind == 2:  # bytes that are not JSON
            raw = rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes() + mark.encode()
            r = hardened.post(route, content=raw, headers={**headers, "Content-Type": "application/json"})
        elif kind == 3:  # multipart with broken images and fields
            junk = rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
            files = {str(rng.choice(["print", "vein", mark])): ("x.png", b"\x89PNG\r\n\x1a\n" + junk)}
            data = {str(rng.choice(["subject", "k", "against"])): str(rng.choice([mark, "-1", "s1", "x" * 300]))}
            r = hardened.post(route.replace("/v1/", "/v1/upload/"), data=data, files=files, headers=headers)
        else:  # wrong methods, paths and keys
            r = rng.choice(3)
            if r == 0:
                r = hardened.get(route + "?" + mark, headers=headers)
            elif r == 1:
                r = hardened.delete("/v1/subjects/" + mark + "%2F..%2F", headers=headers)
            else:
                r = hardened.post(route, json={"subject": mark}, headers={"X-API-Key": mark})
        answers.append(r)
    assert len(answers) >= 100
    for r in answers:
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        assert "\n" not in r.text and mark not in r.text and len(r.text) < 400, r.text
    assert hardened.get("/health").json()["status"] == "ok"


def test_two_servers_on_one_postgresql_database_miss_no_enrollment(bundle, tmp_path, postgres_server):
    """The run that found the late-commit bug: two `serve` replicas on one database, enrollments through both
    at once; afterwards each replica identifies every acknowledged subject without a restart."""
    import httpx

    from biohash.serve.service import wait_until_healthy
    from conftest import _free_port

    url = postgres_server()
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY} enroll,match,codes,scores\n")
    keys.chmod(0o600)
    ports = [_free_port(), _free_port()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    servers = [subprocess.Popen([sys.executable, "-m", "biohash.cli", "serve", "--bundle", str(bundle), "--store", url,
                                 "--port", str(p), "--api-key-file", str(keys), "--rate-limit", "0"], env=env,
                                stderr=subprocess.DEVNULL) for p in ports]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for base, server in zip(bases, servers):
            wait_until_healthy(base, server)
        codes = {f"u{k}": _hex(c) for k, c in enumerate(np.random.default_rng(21).integers(0, 2, (300, 32)))}

        def enroll(item) -> str | None:
            k, (subject, code) = item
            with httpx.Client(base_url=bases[k % 2], headers=H, timeout=30) as c:
                ok = c.post("/v1/enroll", json={"subject": subject, "codes": {"print": code}}).status_code == 200
                if k % 7 == 0:  # identify while others enroll: each replica keeps catching up mid-run
                    c.post("/v1/identify", json={"codes": {"print": code}, "k": 1})
                return subject if ok else None

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            acked = [s for s in pool.map(enroll, enumerate(codes.items())) if s]
        assert len(acked) == 300
        missed = 0
        for base in bases:
            with httpx.Client(base_url=base, headers=H, timeout=30) as c:
                for subject in acked:
                    top = c.post("/v1/identify", json={"codes": {"print": codes[subject]}, "k": 1}).json()
                    missed += top["candidates"][0]["subject"] != subject
        assert missed == 0
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)


def test_serve_says_where_it_listens_logs_each_request_and_documents_itself_offline(bundle, tmp_path):
    """On main serve printed nothing, /docs pulled Swagger from a CDN (blank offline) and an OpenCV warning
    leaked into the log on a corrupt upload."""
    import httpx

    from biohash.serve.service import wait_until_healthy
    from conftest import _free_port

    port = _free_port()
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY}\n")
    keys.chmod(0o600)
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        server = subprocess.Popen([sys.executable, "-m", "biohash.cli", "serve", "--bundle", str(bundle), "--store",
                                   str(tmp_path / "s.db"), "--port", str(port), "--api-key-file", str(keys)],
                                  stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"})
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base, server)
            docs = httpx.get(f"{base}/docs")
            assert docs.status_code == 200 and "swagger-ui" in docs.text and "https://" not in docs.text
            scripts = [part.split('"')[1] for part in docs.text.split("src=")[1:] if part.startswith('"')]
            assert scripts and all(httpx.get(f"{base}{src}").status_code == 200 for src in scripts)  # served here
            broken = b"\xff\xd8\xff\xe0" + b"\x00" * 64  # a JPEG start and nothing else
            r = httpx.post(f"{base}/v1/upload/identify", files={"print": ("p.jpg", broken)}, headers=H)
            assert r.status_code == 400
        finally:
            server.terminate()
            server.wait(timeout=10)
    text = log.read_text()
    first = text.splitlines()[0]
    assert f"listening on http://127.0.0.1:{port}" in first and "0 templates" in first and "32 bits" in first
    assert "GET /health" in text and "GET /docs" in text and "POST /v1/upload/identify" in text
    assert "status=400" in text and "WARN" not in text and "Warning" not in text
