"""The demo: train co-hashing on synthetic palms, evaluate it (run_demo), then deploy the trained run so the
README's deployment commands work right after it (deploy_demo).

Exports the bundle (torch back-end: no ONNX tools needed), enrolls every test palm but one into
RUN/templates.db, keeps that one ("alice") as sample images for the user's first enroll, writes an API key
file, identifies and verifies every enrolled palm's new capture (genuine and impostor claims), and prints the
next commands.
"""
from __future__ import annotations

import os
import secrets
import time
from collections import defaultdict
from pathlib import Path

import cv2

from biohash.match.codes import hamming
from biohash.match.types import Codes
from biohash.train.data.config import DataConfig, open_split
from biohash.train.runs import read_config

SAMPLE_SUBJECT = "alice"


def _captures(samples) -> dict:
    """identity -> modality -> first sample (in split order)."""
    out: dict = defaultdict(dict)
    for s in samples:
        out[s.identity].setdefault(s.modality, s)
    return out


class _Palms:
    """Codes of every test palm's first gallery and first probe capture, per modality, in one batch each."""

    def __init__(self, dep, dataset, gallery: dict, probes: dict, people: list[str]) -> None:
        self.people, self.modalities = people, sorted(gallery[people[0]])
        self.index = {identity: k for k, identity in enumerate(people)}
        self._codes = {(side, m): dep.encoder.encode([dataset.load(captures[i][m]) for i in people], m)
                       for side, captures in (("gallery", gallery), ("probe", probes)) for m in self.modalities}

    def codes(self, side: str, identity: str) -> dict[str, Codes]:
        k = self.index[identity]
        return {m: Codes(c.bits[k : k + 1], c.n_bits) for (s, m), c in self._codes.items() if s == side}


def _walkthrough_palm(dep, palms: _Palms) -> str:
    """The README walkthrough's palm ("alice"): the first whose new capture passes the threshold in every single
    modality, so the commands show a match (the rates printed are over all the other palms)."""
    limits = {m: dep.threshold(m) for m in palms.modalities}
    for identity in palms.people:
        probe, enrolled = palms.codes("probe", identity), palms.codes("gallery", identity)
        if all(limits[m] is None or hamming(probe[m], enrolled[m])[0, 0] <= limits[m] for m in palms.modalities):
            return identity
    return palms.people[0]


def _measure(dep, palms: _Palms, enrolled: list[str]) -> dict:
    """Every enrolled palm's new capture, as a user would send it: identify (1:N), and verify (1:1) a genuine
    claim and an impostor claim on the next palm, at the model's FAR 1e-3 threshold chosen on validation."""
    rank1 = genuine = impostor = 0
    for k, identity in enumerate(enrolled):
        probe = palms.codes("probe", identity)
        rank1 += dep.identify(probe, k=1)[0]["subject"] == f"palm-{identity}"
        genuine += bool(dep.verify(f"palm-{identity}", probe).match)
        impostor += bool(dep.verify(f"palm-{enrolled[(k + 1) % len(enrolled)]}", probe).match)
    mode = "fused" if len(palms.modalities) > 1 else palms.modalities[0]
    return {"enrolled": len(enrolled), "mode": mode, "rank1": rank1, "genuine_accepted": genuine,
            "impostors_accepted": impostor, "threshold": dep.threshold(mode)}


def _write_samples(run_dir: Path, dataset, gallery: dict, probes: dict, alice: str) -> tuple[Path, Path]:
    samples = run_dir / "samples"
    samples.mkdir(exist_ok=True)
    for m in gallery[alice]:
        cv2.imwrite(str(samples / f"{SAMPLE_SUBJECT}_{m}.png"), dataset.load(gallery[alice][m]))
        cv2.imwrite(str(samples / f"{SAMPLE_SUBJECT}_probe_{m}.png"), dataset.load(probes[alice][m]))
    keys = run_dir / "keys.txt"
    if not keys.exists():
        keys.write_text(f"{secrets.token_hex(16)}\n")
    os.chmod(keys, 0o600)
    return samples, keys


def _print_next(console, run_dir: Path, store: Path, samples: Path, keys: Path, *, modalities: list[str]) -> None:
    run, who = str(run_dir), SAMPLE_SUBJECT
    pairs = " ".join(f"-i {m}={samples}/{who}_{m}.png" for m in modalities)
    probe_pairs = " ".join(f"-i {m}={samples}/{who}_probe_{m}.png" for m in modalities)
    console.print("next:", style="bold")
    console.print(f"  biohash enroll {who} --bundle {run} --store {store} {pairs}", soft_wrap=True)
    console.print(f"  biohash identify --bundle {run} --store {store} {probe_pairs}", soft_wrap=True)
    console.print(f"  biohash serve --bundle {run} --store {store} --api-key-file {keys}", soft_wrap=True)
    console.print(f"  curl -s -H \"X-API-Key: $(cat {keys})\" -F {modalities[0]}=@{samples}/{who}_probe_"
                  f"{modalities[0]}.png http://127.0.0.1:8000/v1/upload/identify", soft_wrap=True)


def deploy_demo(run_dir: Path, console) -> dict:
    """Export, enroll the test gallery, keep one palm as samples, identify + verify the probes; returns counts."""
    from biohash.serve.deployment import Deployment
    from biohash.train.export import export_run

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
    palms = _Palms(dep, dataset, gallery, probes, people)
    alice = _walkthrough_palm(dep, palms)
    enrolled = [i for i in people if i != alice]
    for identity in enrolled:
        dep.enroll(f"palm-{identity}", palms.codes("gallery", identity))
    samples, keys = _write_samples(run_dir, dataset, gallery, probes, alice)
    r = _measure(dep, palms, enrolled)
    n = r["enrolled"]
    console.print(f"deployed: {n} test palms enrolled in {store}; their new captures ({r['mode']}): identify rank-1 "
                  f"{r['rank1']}/{n}; verify at FAR 1e-3 (threshold {r['threshold']} bits, from validation) accepts "
                  f"{r['genuine_accepted']}/{n} genuine and {r['impostors_accepted']}/{n} impostor claims")
    _print_next(console, run_dir, store, samples, keys, modalities=palms.modalities)
    return {**r, "store": str(store)}


DEMO_INIT = "zoo:compnet_lite-128"


def run_demo(run_dir: Path, *, epochs: int = 10, identities: int = 1000, bits: int = 64, seed: int = 0,
             fresh: bool = True, backbone: str = "compnet_lite", init: str | None = DEMO_INIT,
             deploy: bool = True) -> dict[str, dict[str, float]]:
    """The whole line on synthetic data: generate, train co-hashing (from the shipped synthetic pretraining by
    default; its palms are another seed's, so the demo's test palms stay unseen), evaluate the open-set test
    split, print; then deploy it (deploy_demo: export, enroll the test palms, identify, verify)."""
    import shutil

    from rich.console import Console
    from rich.table import Table

    from biohash.train.eval_run import evaluate_run
    from biohash.train.fit_config import FitConfig
    from biohash.train.recipes.cohash import CohashConfig
    from biohash.train.report import TABLE_COLUMNS, table_rows
    from biohash.train.train_job import train

    console = Console()
    if fresh and run_dir.exists():
        read_config(run_dir)  # refuse to delete a folder that is not a run
        shutil.rmtree(run_dir)
    t0 = time.time()
    data = DataConfig(dataset="synthetic", identities=identities, captures=4, protocol="open", seed=seed)
    fit_cfg = FitConfig(epochs=epochs, batch_size=64, lr=1e-3, val_every=2, seed=seed)
    train(run_dir, data, CohashConfig(backbone=backbone, bits=bits, init=init), fit_cfg, resume=not fresh)
    per_mode = evaluate_run(run_dir)
    table = Table(title=f"co-hashing, {bits} bits, synthetic open set (identity-disjoint test palms)")
    for col in ["mode"] + [title for _, title, _ in TABLE_COLUMNS]:
        table.add_column(col, justify="right")
    for row in table_rows(per_mode):
        table.add_row(*row)
    console.print(table)
    console.print(f"report: {run_dir / 'eval' / 'open-test' / 'report.md'}")
    if deploy:
        deploy_demo(run_dir, console)
    console.print(f"demo done in {time.time() - t0:.0f} s")
    return per_mode
