"""Fast by default (issue 24): the deployment picks faiss BFlat and ONNX Runtime when they are there, says so,
and falls back correctly when they are not; one image at a time encodes to the same codes as a batch."""
from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest


def test_auto_picks_faiss_bflat_where_faiss_imports_and_the_scan_where_it_does_not(monkeypatch):
    from biohash.match import matching
    from biohash.match.matching import ExactMatcher, FaissMatcher, make_matcher

    assert isinstance(make_matcher(64), FaissMatcher) and make_matcher(64).factory == "BFlat"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else real(name, *a))
    assert matching.resolve_matcher("auto") == "exact" and isinstance(make_matcher(64, "auto"), ExactMatcher)
    assert matching.resolve_matcher("BIVF64") == "BIVF64"


def test_a_deployment_defaults_to_onnx_and_bflat_and_health_says_so(fixed, tmp_path):
    from biohash.serve.deployment import Deployment

    dep = Deployment.from_bundle(fixed, tmp_path / "a.db")
    health = dep.health()
    assert health["backend"] == "onnx" and health["matcher"] == "BFlat"  # on main: torch and exact
    without_onnx = tmp_path / "bundle"
    shutil.copytree(fixed, without_onnx)
    meta = json.loads((without_onnx / "bundle.json").read_text())
    meta["onnx"] = {}
    (without_onnx / "bundle.json").write_text(json.dumps(meta))
    assert Deployment.from_bundle(without_onnx, tmp_path / "b.db").health()["backend"] == "torch"


def test_auto_never_picks_a_model_that_failed_its_check_or_int8(fixed, tmp_path):
    from biohash.serve.encoder import resolve_backend

    meta = json.loads((fixed / "bundle.json").read_text())
    assert resolve_backend(meta, "auto") == "onnx"
    assert resolve_backend({**meta, "failed_checks": ["print/onnx"]}, "auto") == "torch"
    assert resolve_backend(meta, "onnx-int8") == "onnx-int8"  # chosen by name only


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_one_image_at_a_time_gives_the_codes_of_a_batch(fixed, backend):
    from biohash.serve.encoder import Encoder
    from biohash.train.data.datasets import open_dataset

    enc = Encoder(fixed, backend=backend)
    ds = open_dataset("synthetic", identities=4, captures=2, size=64, seed=3)
    images = [ds.load(s) for s in ds.samples if s.modality == "print"]
    batch = enc.encode(images, "print").bits
    single = np.concatenate([enc.encode([img], "print").bits for img in images])
    assert np.array_equal(batch, single)


def test_the_export_check_reports_batch_one_speed_beside_agreement(bundle):
    meta = json.loads((bundle / "bundle.json").read_text())
    check = meta["checks"]["print/onnx"]
    assert check["ms_per_image_batch1"] > 0 and check["torch_ms_per_image_batch1"] > 0


def test_batch_identify_answers_each_probe_as_single_identify_does(fixed, tmp_path):
    from fastapi.testclient import TestClient

    from biohash.serve.access import SCOPES, ApiKey
    from biohash.serve.deployment import Deployment
    from biohash.serve.service import create_app

    key = "batch-key-3e91c07d5a2b68f4"
    client = TestClient(create_app(Deployment.from_bundle(fixed, tmp_path / "b.db"), [ApiKey(key, frozenset(SCOPES))]),
                        raise_server_exceptions=False)
    h = {"X-API-Key": key}
    rng = np.random.default_rng(4)
    codes = [np.packbits(rng.integers(0, 2, 32).astype(np.uint8)).tobytes().hex() for _ in range(12)]
    for n, c in enumerate(codes):
        client.post("/v1/enroll", json={"subject": f"s{n}", "codes": {"print": c}}, headers=h)
    probes = [{"codes": {"print": c}} for c in codes[:5]]
    batch = client.post("/v1/identify/batch", json={"probes": probes, "k": 3}, headers=h)
    assert batch.status_code == 200
    singles = [client.post("/v1/identify", json={**p, "k": 3}, headers=h).json() for p in probes]
    assert batch.json()["results"] == singles and [r["candidates"][0]["subject"] for r in singles] == [f"s{n}" for n in range(5)]
    assert client.post("/v1/identify/batch", json={"probes": probes * 13}, headers=h).status_code == 422  # 65 > 64


def test_the_api_docs_come_from_the_library_offline_with_every_field_described(fixed, tmp_path):
    from fastapi.testclient import TestClient

    from biohash.serve.deployment import Deployment
    from biohash.serve.service import create_app

    client = TestClient(create_app(Deployment.from_bundle(fixed, tmp_path / "d.db"), ["docs-key-5f0a9e13c7b2d864"]))
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["api_key"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key", "description": schema["components"]["securitySchemes"]
        ["api_key"]["description"]}  # "Authorize" works; on main no scheme was declared
    for route, fields in (("/v1/upload/enroll", {"print", "vein", "subject"}),
                          ("/v1/upload/verify", {"print", "vein", "subject", "against"}),
                          ("/v1/upload/identify", {"print", "vein", "against", "k"})):
        props = schema["paths"][route]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
        assert set(props) == fields and all(p.get("description") for p in props.values()), route  # on main: none
    for name in ("EnrollRequest", "VerifyRequest", "IdentifyRequest", "BatchIdentifyRequest"):
        props = schema["components"]["schemas"][name]["properties"]
        assert all(p.get("description") for p in props.values()), name
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "https://" not in html and "cdn" not in html.lower(), page
        for src in [part.split('"')[1] for part in html.split("src=")[1:] if part.startswith('"')]:
            assert client.get(src).status_code == 200, src  # the scripts are served here


def test_swagger_ui_renders_in_a_headless_browser(fixed, tmp_path):
    """Where Chromium is installed: /docs drawn by a real browser, offline (the page is not blank)."""
    import shutil
    import subprocess
    import sys

    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium on this machine: the headless /docs screenshot check needs one")
    from biohash.serve.service import wait_until_healthy
    from conftest import _free_port

    port = _free_port()
    keys = tmp_path / "keys"
    keys.write_text("docs-key-5f0a9e13c7b2d864\n")
    keys.chmod(0o600)
    server = subprocess.Popen([sys.executable, "-m", "biohash.cli", "serve", "--bundle", str(fixed), "--store",
                               str(tmp_path / "s.db"), "--port", str(port), "--api-key-file", str(keys)])
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", server)
        shot = tmp_path / "docs.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                        "--virtual-time-budget=5000", f"http://127.0.0.1:{port}/docs"], timeout=60, check=True)
        import matplotlib.image

        img = matplotlib.image.imread(shot)
        assert img.std() > 0.05  # drawn, not a blank page
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_identify_many_searches_each_mode_once_and_answers_as_identify(fixed, tmp_path, monkeypatch):
    """A batch of probes is one matcher search per mode (faiss scans the gallery once for all of them), with
    the answers identify gives one probe at a time, mixed modes and fused included."""
    from biohash.match.types import Codes
    from biohash.serve.deployment import Deployment

    dep = Deployment.from_bundle(fixed, tmp_path / "m.db")
    rng = np.random.default_rng(9)
    code = lambda: Codes(np.packbits(rng.integers(0, 2, (1, dep.bits)).astype(np.uint8), axis=1), dep.bits)  # noqa: E731
    enrolled = {f"s{n}": {"print": code(), "vein": code()} for n in range(20)}
    for subject, codes in enrolled.items():
        dep.enroll(subject, codes)
    probes = [{"print": enrolled["s3"]["print"]}, {"vein": enrolled["s7"]["vein"]}, {"print": enrolled["s5"]["print"]},
              enrolled["s11"], {"print": code()}]
    singles = [dep.identify(p, k=3) for p in probes]
    calls = {}
    for g, m in dep.matchers.items():
        def counted(codes, k, _search=m.search, _g=g):
            calls[_g] = calls.get(_g, 0) + 1
            return _search(codes, k)
        monkeypatch.setattr(m, "search", counted)
    assert dep.identify_many(probes, k=3) == singles
    assert [s[0]["subject"] for s in singles[:4]] == ["s3", "s7", "s5", "s11"]
    assert calls == {"print": 2, "vein": 2}  # print probes in one search, vein in one, the fused probe one each


def test_a_code_probe_is_answered_on_the_event_loop_and_an_image_probe_in_the_pool(fixed, tmp_path, monkeypatch):
    """By code the search is shorter than a thread hop (1.0 against 2.3 ms a request), so it runs inline;
    images are decoded and encoded in the pool, never on the event loop."""
    import base64

    import cv2
    from fastapi.testclient import TestClient

    from biohash.serve import service
    from biohash.serve.access import SCOPES, ApiKey
    from biohash.serve.deployment import Deployment

    hops = []

    async def counted(fn, *args, **kwargs):
        hops.append(fn)
        return fn(*args, **kwargs)

    monkeypatch.setattr(service, "run_in_threadpool", counted)
    key = "inline-key-7c41d09e2b5a3f86"
    dep = Deployment.from_bundle(fixed, tmp_path / "i.db")
    client = TestClient(service.create_app(dep, [ApiKey(key, frozenset(SCOPES))]))
    h = {"X-API-Key": key}
    code = np.packbits(np.random.default_rng(2).integers(0, 2, dep.bits).astype(np.uint8)).tobytes().hex()
    assert client.post("/v1/enroll", json={"subject": "a", "codes": {"print": code}}, headers=h).status_code == 200
    hops.clear()
    assert client.post("/v1/identify", json={"codes": {"print": code}, "k": 1}, headers=h).json()["candidates"][0]["subject"] == "a"
    assert client.post("/v1/verify", json={"subject": "a", "codes": {"print": code}}, headers=h).json()["match"] is not False
    assert hops == []
    import threading

    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another request holding the deployment, e.g. an enrollment waiting on the database
        with dep._lock:
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    r = client.post("/v1/identify", json={"codes": {"print": code}, "k": 1}, headers=h)
    holder.join()
    assert r.status_code == 200 and len(hops) == 1  # waited in the pool, not on the event loop
    hops.clear()
    from biohash.train.data.datasets import open_dataset

    ds = open_dataset("synthetic", identities=2, captures=1, size=64, seed=1)
    png = cv2.imencode(".png", ds.load(next(s for s in ds.samples if s.modality == "print")))[1].tobytes()
    r = client.post("/v1/identify", json={"images": {"print": base64.b64encode(png).decode()}, "k": 1}, headers=h)
    assert r.status_code == 200 and len(hops) == 1
