"""The demo's last step: deploy the trained run so the README's deployment commands work right after it.

Exports the bundle (torch back-end: no ONNX tools needed), enrolls every test palm but one into
RUN/templates.db, keeps that one ("alice") as sample images for the user's first enroll, writes an API key
file, identifies and verifies every enrolled palm's new capture (genuine and impostor claims), and prints the
next commands.
"""
from __future__ import annotations

import os
import secrets
from collections import defaultdict
from pathlib import Path

import cv2

from biohash.codes import hamming
from biohash.data.config import DataConfig, open_split
from biohash.runs import read_config
from biohash.types import Codes

SAMPLE_SUBJECT = "alice"


def _captures(samples) -> dict:
    """identity -> modality -> first sample (in split order)."""
    out: dict = defaultdict(dict)
    for s in samples:
        out[s.identity].setdefault(s.modality, s)
    return out


def deploy_demo(run_dir: Path, console) -> dict:
    """Export, enroll the test gallery, keep one palm as samples, identify + verify the probes; returns counts."""
    from biohash.deployment import Deployment
    from biohash.export import export_run

    export_run(run_dir, fmt="torch")
    dataset, split = open_split(DataConfig(**read_config(run_dir)["data"]))
    gallery, probes = _captures(split.test_gallery), _captures(split.test_probe)
    people = [i for i in gallery if i in probes and set(gallery[i]) == set(probes[i])]
    if len(people) < 2:
        raise ValueError("the demo's test split has fewer than two palms with gallery and probe captures")

    store = run_dir / "templates.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    dep = Deployment.from_bundle(run_dir / "export", store)
    modalities = sorted(gallery[people[0]])
    enc = {(side, m): dep.encoder.encode([dataset.load(captures[i][m]) for i in people], m)
           for side, captures in (("gallery", gallery), ("probe", probes)) for m in modalities}

    def one(side: str, m: str, k: int) -> Codes:
        return Codes(enc[side, m].bits[k : k + 1], enc[side, m].n_bits)

    # "alice", the walkthrough's palm, is the first whose new capture passes the threshold in every single
    # modality, so the README's commands show a match; the rates printed below are over all the other palms
    limits = {m: dep.threshold(m) for m in modalities}
    fits = [k for k in range(len(people)) if all(
        limits[m] is None or hamming(one("probe", m, k), one("gallery", m, k))[0, 0] <= limits[m] for m in modalities)]
    a = fits[0] if fits else 0
    alice, enrolled = people[a], people[:a] + people[a + 1 :]
    index = {identity: k for k, identity in enumerate(people)}
    for identity in enrolled:
        dep.enroll(f"palm-{identity}", {m: one("gallery", m, index[identity]) for m in modalities})

    samples = run_dir / "samples"
    samples.mkdir(exist_ok=True)
    for m in modalities:
        cv2.imwrite(str(samples / f"{SAMPLE_SUBJECT}_{m}.png"), dataset.load(gallery[alice][m]))
        cv2.imwrite(str(samples / f"{SAMPLE_SUBJECT}_probe_{m}.png"), dataset.load(probes[alice][m]))
    keys = run_dir / "keys.txt"
    if not keys.exists():
        keys.write_text(f"{secrets.token_hex(16)}\n")
    os.chmod(keys, 0o600)

    # every enrolled palm's new capture, as the user would send it: identify (1:N) and verify (1:1, genuine
    # claim and an impostor claim on the next palm) at the model's FAR 1e-3 threshold chosen on validation
    rank1 = genuine = impostor = 0
    for k, identity in enumerate(enrolled):
        probe = {m: one("probe", m, index[identity]) for m in modalities}
        rank1 += dep.identify(probe, k=1)[0]["subject"] == f"palm-{identity}"
        genuine += bool(dep.verify(f"palm-{identity}", probe).match)
        impostor += bool(dep.verify(f"palm-{enrolled[(k + 1) % len(enrolled)]}", probe).match)
    mode = "fused" if len(modalities) > 1 else modalities[0]
    threshold = dep.threshold(mode)
    n = len(enrolled)
    console.print(f"deployed: {n} test palms enrolled in {store}; their new captures ({mode}): identify rank-1 "
                  f"{rank1}/{n}; verify at FAR 1e-3 (threshold {threshold} bits, from validation) accepts "
                  f"{genuine}/{n} genuine and {impostor}/{n} impostor claims")
    run = str(run_dir)
    pairs = " ".join(f"-i {m}={samples}/{SAMPLE_SUBJECT}_{m}.png" for m in modalities)
    probe_pairs = " ".join(f"-i {m}={samples}/{SAMPLE_SUBJECT}_probe_{m}.png" for m in modalities)
    console.print("next:", style="bold")
    console.print(f"  biohash enroll {SAMPLE_SUBJECT} --bundle {run} --store {store} {pairs}", soft_wrap=True)
    console.print(f"  biohash identify --bundle {run} --store {store} {probe_pairs}", soft_wrap=True)
    console.print(f"  biohash serve --bundle {run} --store {store} --api-key-file {keys}", soft_wrap=True)
    console.print(f"  curl -s -H \"X-API-Key: $(cat {keys})\" -F {modalities[0]}=@{samples}/{SAMPLE_SUBJECT}_probe_"
                  f"{modalities[0]}.png http://127.0.0.1:8000/v1/upload/identify", soft_wrap=True)
    return {"enrolled": n, "store": str(store), "rank1": rank1, "genuine_accepted": genuine,
            "impostors_accepted": impostor, "threshold": threshold}
