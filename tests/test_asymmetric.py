"""Asymmetric matching end to end: the live probe's relaxed code against stored 32-bit codes, in the match layer
(a distance in bits that equals Hamming for a binary probe), under a protection key, in evaluation's modes and
validation thresholds, and in the deployment (verify, identify, the CLI) behind --asymmetric."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from biohash.match.codes import asymmetric_distance, asymmetric_similarity, from_real, hamming, pack
from biohash.match.protect import Protector
from biohash.match.scores import CodeSet, mode_scores
from biohash.match.types import RelaxedCodes


def _relaxed(values: np.ndarray) -> RelaxedCodes:
    values = np.asarray(values, np.float32)
    return RelaxedCodes(from_real(values).bits, values.shape[1], values)


def test_asymmetric_distance_is_hamming_for_a_binary_probe_and_the_cosine_in_bits_otherwise():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (5, 32))
    gallery = pack(rng.integers(0, 2, (7, 32)))
    signs = 2.0 * bits - 1
    assert np.allclose(asymmetric_distance(signs, gallery), hamming(pack(bits), gallery), atol=1e-4)
    values = rng.normal(size=(5, 32)).astype(np.float32)
    cos = asymmetric_similarity(values, gallery)
    assert np.allclose(asymmetric_distance(values, gallery), 32 * (1 - cos) / 2, atol=1e-4)
    # by hand: probe (2, 0.1, ...) against a code that agrees everywhere but on the large first value
    probe = np.full((1, 8), 0.1, np.float32)
    probe[0, 0] = 2.0
    flipped_big = pack(np.array([[0, 1, 1, 1, 1, 1, 1, 1]]))
    flipped_small = pack(np.array([[1, 0, 0, 1, 1, 1, 1, 1]]))
    norm = np.sqrt(4 + 7 * 0.01)
    assert asymmetric_distance(probe, flipped_big)[0, 0] == pytest.approx(8 * (1 - (-2 + 0.7) / norm / np.sqrt(8)) / 2,
                                                                          abs=1e-4)
    # one wrong bit where the probe was sure costs more than two where it was not; Hamming says the opposite
    assert asymmetric_distance(probe, flipped_big)[0, 0] > asymmetric_distance(probe, flipped_small)[0, 0]
    assert hamming(from_real(probe), flipped_big)[0, 0] < hamming(from_real(probe), flipped_small)[0, 0]


def test_relaxed_codes_check_their_values_and_keep_the_sign_bits():
    values = np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)
    r = _relaxed(values)
    assert np.array_equal(r.bits, from_real(values).bits) and len(r) == 3
    with pytest.raises(ValueError, match="values"):
        RelaxedCodes(r.bits, 16, values[:, :8])


def test_protection_transforms_the_relaxed_probe_like_its_code():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(4, 64)).astype(np.float32)
    gallery = pack(rng.integers(0, 2, (9, 64)))
    key = Protector(b"a protection key of 32 bytes....", 64)
    protected = key.protect(_relaxed(values))
    assert isinstance(protected, RelaxedCodes)
    assert np.array_equal(protected.bits, key.protect(from_real(values)).bits)
    assert np.array_equal(protected.bits, from_real(protected.values).bits)  # signs still give the code
    assert np.allclose(asymmetric_distance(protected.values, key.protect(gallery)),
                       asymmetric_distance(values, gallery), atol=1e-4)


def test_asymmetric_mode_scores_cover_fused_and_cross_on_the_hamming_scale():
    rng = np.random.default_rng(3)
    ids, caps = np.repeat(np.arange(3), 2), np.tile(np.arange(2), 3)
    values = {m: rng.normal(size=(6, 16)).astype(np.float32) for m in ("print", "vein")}
    probe = {m: CodeSet(from_real(v), ids, caps) for m, v in values.items()}
    gallery = {m: CodeSet(pack(rng.integers(0, 2, (6, 16))), ids, caps) for m in ("print", "vein")}
    one = {m: 1 - asymmetric_distance(values[m], gallery[m].codes) / 16 for m in ("print", "vein")}
    assert np.allclose(mode_scores("print", probe, gallery, probe_values=values).matrix, one["print"], atol=1e-5)
    assert np.allclose(mode_scores("fused", probe, gallery, probe_values=values).matrix,
                       (one["print"] + one["vein"]) / 2, atol=1e-5)
    assert np.allclose(mode_scores("cross", probe, gallery, probe_values=values).matrix,
                       1 - asymmetric_distance(values["print"], gallery["vein"].codes) / 16, atol=1e-5)
    binary = {m: 2.0 * np.unpackbits(probe[m].codes.bits, axis=1) - 1 for m in probe}
    assert np.allclose(mode_scores("fused", probe, gallery, probe_values=binary).matrix,
                       mode_scores("fused", probe, gallery).matrix, atol=1e-5)


def _palm(identity: int, capture: int, modality: str = "print") -> np.ndarray:
    from biohash.train.data.datasets import open_dataset

    ds = open_dataset("synthetic", identities=identity + 1, captures=capture + 1, size=64, seed=11)
    return ds.load(next(s for s in ds.samples if s.identity == ds.identities()[identity]
                        and s.capture == capture and s.modality == modality))


def test_export_stores_asymmetric_thresholds_for_every_mode(bundle):
    thresholds = json.loads((bundle / "bundle.json").read_text())["thresholds"]
    assert {"print-asym", "vein-asym", "fused-asym", "cross-asym"} <= set(thresholds)
    assert all(set(t) == set(thresholds["print"]) for t in thresholds.values())


@pytest.fixture
def asym_bundle(fixed, tmp_path):
    """The fixed-threshold bundle with asymmetric thresholds too (a larger one than Hamming's, to tell them
    apart in the decision)."""
    import shutil

    out = tmp_path / "asym-bundle"
    shutil.copytree(fixed, out)
    meta = json.loads((out / "bundle.json").read_text())
    meta["thresholds"].update({f"{m}-asym": {"0.001": 9.5} for m in ("print", "vein", "fused", "cross")})
    (out / "bundle.json").write_text(json.dumps(meta))
    return out


def test_deployment_verifies_a_live_probe_asymmetrically(asym_bundle, tmp_path):
    from biohash.serve.deployment import Deployment

    key = b"deployment key for asymmetric tests"
    dep = Deployment.from_bundle(asym_bundle, tmp_path / "a.db", asymmetric=True, key=key)
    plain = Deployment.from_bundle(asym_bundle, tmp_path / "b.db")
    enrolled = {"print": _palm(0, 0), "vein": _palm(0, 0, "vein")}
    dep.enroll("ann", dep.codes_from_images(enrolled))
    plain.enroll("ann", plain.codes_from_images(enrolled))
    live = {"print": _palm(0, 1)}
    probe = dep.codes_from_images(live)
    assert isinstance(probe["print"], RelaxedCodes)
    decision = dep.verify("ann", probe)
    # independently: the encoder's relaxed output against the unprotected enrolled code
    values = dep.encoder.embed_batch(dep.encoder.preprocess([live["print"]]), "print")[1]
    template = dep.encoder.encode([enrolled["print"]], "print")
    expected = float(asymmetric_distance(values, template)[0, 0])
    assert decision.mode == "print-asym" and decision.distance == pytest.approx(expected, abs=1e-3)
    assert decision.threshold == 9.5 and decision.match == (expected <= 9.5)
    hamming_decision = plain.verify("ann", plain.codes_from_images(live))
    assert hamming_decision.mode == "print" and hamming_decision.threshold == 8
    assert hamming_decision.distance == float(hamming(from_real(values), template)[0, 0])
    # a hex code has no relaxed values: matched by Hamming distance even here
    hex_probe = dep.codes_from_hex({"print": from_real(values).bits.tobytes().hex()})
    assert dep.verify("ann", hex_probe).mode == "print"
    fused = dep.verify("ann", dep.codes_from_images({"print": _palm(0, 1), "vein": _palm(0, 1, "vein")}))
    assert fused.mode == "fused-asym" and fused.threshold == 9.5


class _NoCodesMatcher:
    """A user's own matcher that predates codes_of: search and 1:1 distances only."""

    def __init__(self, n_bits: int, spec: str = "", threads: int = 1) -> None:
        from biohash.match.scan import ExactMatcher

        self.n_bits, self._inner = n_bits, ExactMatcher(n_bits)
        self.add, self.remove, self.search = self._inner.add, self._inner.remove, self._inner.search
        self.distances = self._inner.distances

    def __len__(self) -> int:
        return len(self._inner)


@pytest.mark.parametrize("matcher", ["auto", "mih", "test_no_codes"])
def test_identify_ranks_by_the_asymmetric_distance(fixed, tmp_path, matcher):
    from biohash.match.matching import MATCHERS
    from biohash.serve.deployment import Deployment

    if "test_no_codes" not in MATCHERS.names():
        MATCHERS.register("test_no_codes")(_NoCodesMatcher)
    dep = Deployment.from_bundle(fixed, tmp_path / "i.db", asymmetric=True, matcher=matcher)
    probe_values = np.full((1, 32), 0.1, np.float32)
    probe_values[0, :2] = 1.0  # sure of the first two bits, unsure of the rest
    code = np.ones(32, np.uint8)
    sure_wrong, unsure_wrong = code.copy(), code.copy()
    sure_wrong[0] = 0  # one bit wrong where the probe is sure: Hamming 1
    unsure_wrong[2:5] = 0  # three bits wrong where it is not: Hamming 3
    for name, bits in (("sure-wrong", sure_wrong), ("unsure-wrong", unsure_wrong)):
        dep.enroll(name, {"print": pack(bits[None])})
    for k in range(40):  # impostors far from the probe
        dep.enroll(f"other{k}", {"print": pack(np.random.default_rng(k).integers(0, 2, (1, 32)))})
    found = dep.identify({"print": _relaxed(probe_values)}, k=10)
    order = [c["subject"] for c in found]
    assert order[0] == "unsure-wrong" and "sure-wrong" in order and found[0]["mode"] == "print-asym"
    assert found[0]["distance"] == pytest.approx(float(asymmetric_distance(probe_values, pack(unsure_wrong[None]))[0, 0]))
    assert [c["distance"] for c in found] == sorted(c["distance"] for c in found)
    hamming_first = dep.identify(dep.codes_from_hex({"print": pack(code[None]).bits.tobytes().hex()}), k=1)
    assert hamming_first[0]["subject"] == "sure-wrong" and hamming_first[0]["mode"] == "print"


def test_cli_verify_and_identify_take_asymmetric(asym_bundle, tmp_path):
    from biohash.cli import app as cli

    runner = CliRunner()
    store = str(tmp_path / "cli.db")
    for k in range(2):
        cv2.imwrite(str(tmp_path / f"p{k}.png"), _palm(k, 0))
        r = runner.invoke(cli, ["enroll", f"s{k}", "--bundle", str(asym_bundle), "--store", store, "-i",
                                f"print={tmp_path / f'p{k}.png'}"])
        assert r.exit_code == 0, r.output
    cv2.imwrite(str(tmp_path / "live.png"), _palm(0, 1))
    r = runner.invoke(cli, ["verify", "s0", "--bundle", str(asym_bundle), "--store", store, "--asymmetric", "-i",
                            f"print={tmp_path / 'live.png'}"])
    assert r.exit_code in (0, 1) and r.output.startswith("print-asym: distance") and "threshold 9.5" in r.output, \
        r.output
    r = runner.invoke(cli, ["identify", "--bundle", str(asym_bundle), "--store", store, "--asymmetric", "-i",
                            f"print={tmp_path / 'live.png'}", "-k", "2"])
    assert r.exit_code == 0 and all(line.split("\t")[2] == "print-asym" for line in r.output.splitlines()), r.output


def test_the_service_matches_uploads_asymmetrically(asym_bundle, tmp_path):
    from fastapi.testclient import TestClient

    from biohash.serve.access import SCOPES, ApiKey
    from biohash.serve.deployment import Deployment
    from biohash.serve.service import create_app

    dep = Deployment.from_bundle(asym_bundle, tmp_path / "s.db", asymmetric=True)
    client = TestClient(create_app(dep, [ApiKey("operator-key-0123", frozenset(SCOPES))]),
                        raise_server_exceptions=False)
    headers = {"X-API-Key": "operator-key-0123"}

    def png(img: np.ndarray) -> bytes:
        return cv2.imencode(".png", img)[1].tobytes()

    r = client.post("/v1/upload/enroll", data={"subject": "ann"}, files={"print": ("p.png", png(_palm(0, 0)))},
                    headers=headers)
    assert r.status_code == 200, r.text
    r = client.post("/v1/upload/verify", data={"subject": "ann"}, files={"print": ("p.png", png(_palm(0, 1)))},
                    headers=headers)
    assert r.status_code == 200 and r.json()["mode"] == "print-asym" and r.json()["threshold"] == 9.5, r.text
    assert client.get("/health", headers=headers).json()["asymmetric"] is True


def test_asymmetric_answers_hide_which_subjects_exist_and_need_their_own_threshold(asym_bundle, fixed, tmp_path):
    """A 'match' key: an unknown subject answers exactly like a known non-match (the same mode name), and a
    model without asymmetric thresholds refuses asymmetric matching instead of answering 'no match' to all."""
    from fastapi.testclient import TestClient

    from biohash.serve.deployment import Deployment
    from biohash.serve.service import create_app

    def png(img: np.ndarray) -> bytes:
        return cv2.imencode(".png", img)[1].tobytes()

    strict = tmp_path / "strict"  # a threshold no other palm passes: ann's answer is a non-match
    import shutil

    shutil.copytree(asym_bundle, strict)
    meta = json.loads((strict / "bundle.json").read_text())
    meta["thresholds"]["print-asym"] = {"0.001": 0.5}
    (strict / "bundle.json").write_text(json.dumps(meta))
    headers = {"X-API-Key": "door-reader-key-0123"}
    for bundle, name in ((strict, "with"), (fixed, "without")):
        dep = Deployment.from_bundle(bundle, tmp_path / f"{name}.db", asymmetric=True)
        dep.enroll("ann", dep.codes_from_images({"print": _palm(0, 0)}))
        client = TestClient(create_app(dep, ["door-reader-key-0123"]), raise_server_exceptions=False)
        answers = {s: client.post("/v1/upload/verify", data={"subject": s}, files={"print": ("p.png", png(_palm(1, 1)))},
                                  headers=headers) for s in ("ann", "nobody")}
        if name == "with":
            assert answers["ann"].status_code == answers["nobody"].status_code == 200, answers["ann"].text
            ann, nobody = ({k: v for k, v in answers[s].json().items() if k != "subject"} for s in ("ann", "nobody"))
            assert ann == nobody == {"mode": "print-asym", "match": False, "band": "low"}
        else:
            assert answers["ann"].status_code == 400 and "print-asym" in answers["ann"].text and "export again" in \
                answers["ann"].text, answers["ann"].text


def test_serve_says_it_matches_asymmetrically_and_warns_without_thresholds(fixed, tmp_path):
    import os
    import subprocess
    import sys

    from biohash.serve.service import wait_until_healthy
    from conftest import _free_port

    port, keys, log = _free_port(), tmp_path / "keys", tmp_path / "serve.log"
    keys.write_text("operator-key-0123456 enroll,match,codes,scores\n")
    keys.chmod(0o600)
    with log.open("w") as err:
        server = subprocess.Popen([sys.executable, "-m", "biohash.cli", "serve", "--bundle", str(fixed), "--store",
                                   str(tmp_path / "s.db"), "--port", str(port), "--api-key-file", str(keys),
                                   "--asymmetric"], stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            wait_until_healthy(f"http://127.0.0.1:{port}", server)
        finally:
            server.terminate()
            server.wait(timeout=10)
    first, second = log.read_text().splitlines()[:2]
    assert "asymmetric matching" in first and "no asymmetric ('-asym') thresholds" in second
