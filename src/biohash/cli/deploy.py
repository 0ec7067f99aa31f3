"""Deployment commands of the CLI: enroll, verify, identify, delete, serve (registered on biohash.cli.app.app)."""
from __future__ import annotations

from pathlib import Path

import typer

from biohash.cli.app import _friendly, app
from biohash.errors import BiohashError
from biohash.imaging.images import MAX_PIXELS

_BUNDLE = typer.Option(..., "--bundle", "--model", help="exported bundle (RUN/export) or a run folder")
_STORE = typer.Option("templates.db", "--store", help="SQLite file, sqlite:///PATH or postgresql://...")
_IMAGE = typer.Option(None, "--image", "-i", help="MODALITY=PATH, e.g. print=palm.png (repeat for fused)")
_CODE = typer.Option(None, "--code", "-c", help="MODALITY=HEX: a code computed on a device, instead of an image")
_BACKEND = typer.Option("auto", help="encoder back-end: auto (onnx where the bundle has it, else torch), torch, "
                        "onnx or onnx-int8")
_MATCHER = typer.Option("auto", help="auto (faiss BFlat where faiss is installed, else exact), exact, mih, BFlat, "
                        "BIVF1024:nprobe=16, BHNSW32 ...")
_KEY = typer.Option(None, "--key-file", help="protection key file (hex); templates are cancellable under it")
_FAR = typer.Option(1e-3, "--far", help="target FAR of the decision threshold (stored with the model)")
_ASYM = typer.Option(False, "--asymmetric", help="match image probes by their unbinarised codes against the stored "
                     "codes (modes '<mode>-asym', their own thresholds; templates unchanged)")


def _deployment(bundle: Path, store: str, backend: str = "auto", key_file: Path | None = None,
                far: float = 1e-3, matcher: str = "auto", device: str = "cpu", *, create: bool = False,
                asymmetric: bool = False):
    """The command's Deployment; only commands that write (enroll, serve) may create the store."""
    import os

    # before faiss or torch loads OpenMP: idle workers sleep instead of spinning (a spinning pool made single
    # faiss queries 20x slower on a busy machine); an operator's own setting wins
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from biohash.serve.deployment import Deployment

    if (bundle / "export" / "bundle.json").is_file():
        bundle = bundle / "export"
    from biohash.serve.access import read_protection_key

    key = read_protection_key(key_file) if key_file else None
    return Deployment.from_bundle(bundle, store, backend=backend, matcher=matcher, key=key, far=far, device=device,
                                  create=create, asymmetric=asymmetric)


def _pairs(pairs: list[str], flag: str, form: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        modality, sep, value = pair.partition("=")
        if not sep or not modality or not value:
            raise BiohashError(f"{flag} takes {form}, got {pair!r}")
        out[modality] = value
    return out


def _probe(dep, images: list[str] | None, codes: list[str] | None) -> dict:
    """Codes of the request: images encoded by the model, or hex codes a device computed (no torch needed)."""
    from biohash.imaging.images import read_image

    if bool(images) == bool(codes):
        raise BiohashError("give --image MODALITY=PATH or --code MODALITY=HEX (one per modality; both for fused), "
                         "not both")
    if codes:
        return dep.codes_from_hex(_pairs(codes, "--code", "MODALITY=HEX"))
    paths = _pairs(images or [], "--image", "MODALITY=PATH")
    return dep.codes_from_images({m: read_image(path) for m, path in paths.items()})


@app.command()
@_friendly
def enroll(subject: str = typer.Argument(..., metavar="SUBJECT", help="subject id"), bundle: Path = _BUNDLE, store: str = _STORE,
           image: list[str] | None = _IMAGE, code: list[str] | None = _CODE, backend: str = _BACKEND,
           key_file: Path | None = _KEY) -> None:
    """Enroll a subject: one template per given modality, stored in one transaction."""
    dep = _deployment(bundle, store, backend, key_file, create=True)
    ids = dep.enroll(subject, _probe(dep, image, code))
    typer.echo(f"enrolled {subject}: templates {ids}")


@app.command()
@_friendly
def verify(subject: str = typer.Argument(..., metavar="SUBJECT"), bundle: Path = _BUNDLE, store: str = _STORE,
           image: list[str] | None = _IMAGE, code: list[str] | None = _CODE,
           against: str | None = typer.Option(None, help="gallery modality "
           "(cross mode: --image print=... --against vein)"), backend: str = _BACKEND,
           key_file: Path | None = _KEY, far: float = _FAR, asymmetric: bool = _ASYM) -> None:
    """1:1: does the probe match the subject's templates? Exit code 0 on a match, 1 on a non-match, 3 when the
    model carries no threshold for this mode at this FAR."""
    dep = _deployment(bundle, store, backend, key_file, far, asymmetric=asymmetric)
    d = dep.verify(subject, _probe(dep, image, code), against)
    if d.match is None:
        fars = sorted(f for f, t in dep.thresholds.get(d.mode, {}).items() if t is not None)
        have = f"thresholds exist at FAR {', '.join(fars)}" if fars else "the model has no threshold for this mode"
        verdict = f"unknown (no threshold at FAR {far:g}; {have})"
    else:
        verdict = "match" if d.match else "no match"
    typer.echo(f"{d.mode}: distance {d.distance:.1f} bits, threshold {d.threshold} at FAR {far:g}: {verdict}")
    raise typer.Exit(3 if d.match is None else 0 if d.match else 1)


@app.command()
@_friendly
def identify(bundle: Path = _BUNDLE, store: str = _STORE, image: list[str] | None = _IMAGE,
             code: list[str] | None = _CODE, against: str | None = typer.Option(None), k: int = typer.Option(5, "-k", "--top"), backend: str = _BACKEND,
             key_file: Path | None = _KEY, far: float = _FAR,
             matcher: str = _MATCHER, asymmetric: bool = _ASYM) -> None:
    """1:N: the k nearest enrolled subjects."""
    dep = _deployment(bundle, store, backend, key_file, far, matcher, asymmetric=asymmetric)
    for c in dep.identify(_probe(dep, image, code), against, k):
        typer.echo(f"{c['subject']}\t{c['distance']:.1f}\t{c['mode']}\t"
                   f"{'match' if c['match'] else 'no match' if c['match'] is False else '-'}")


@app.command()
@_friendly
def delete(subject: str = typer.Argument(..., metavar="SUBJECT"), store: str = _STORE) -> None:
    """Remove every template of a subject."""
    from biohash.serve.store import open_store

    n = open_store(store, create=False).delete(subject)
    if not n:
        raise BiohashError(f"no templates for subject {subject!r}")
    typer.echo(f"deleted {n} templates of {subject}")


@app.command()
@_friendly
def serve(bundle: Path = _BUNDLE, store: str = _STORE, host: str = typer.Option("127.0.0.1"),
          port: int = typer.Option(8000), api_key_file: Path = typer.Option(..., help="one API key per line, "
          "optionally followed by scopes: KEY enroll,match,codes,scores ('#' comments; see biohash.serve.access)"),
          backend: str = _BACKEND, key_file: Path | None = _KEY, far: float = _FAR,
          matcher: str = _MATCHER, max_body_mb: float = typer.Option(4.0),
          max_pixels: int = typer.Option(MAX_PIXELS, help="images declaring more pixels are refused (413)"),
          rate_limit: int = typer.Option(600, help="requests per minute per API key (0: no limit)"),
          failed_auth_limit: int = typer.Option(30, help="wrong-key requests per minute per client address; past "
                                                "it the address gets 429 for the rest of the minute"),
          body_timeout: float = typer.Option(10.0, help="seconds a client has to send a whole request body (408)"),
          audit_log: Path | None = typer.Option(None, help="append audit lines here (default: stderr)"),
          device: str = typer.Option("cpu", help="where the torch back-end encodes images: cpu, auto, cuda, "
                                     "cuda:N or mps"), asymmetric: bool = _ASYM) -> None:
    """Serve enroll / verify / identify / delete over HTTP (API docs at /docs, schema at /openapi.json)."""
    import logging
    import time

    import cv2
    import uvicorn

    from biohash.serve.access import read_api_keys
    from biohash.serve.service import create_app

    started = time.perf_counter()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # bad uploads get a 4xx, not a log warning
    keys = read_api_keys(api_key_file)
    dep = _deployment(bundle, store, backend, key_file, far, matcher, device, create=True, asymmetric=asymmetric)
    handler = logging.FileHandler(audit_log) if audit_log else logging.StreamHandler()  # once the service can start
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    audit = logging.getLogger("biohash.audit")
    audit.addHandler(handler)
    audit.setLevel(logging.INFO)
    health = dep.health()
    typer.echo(f"biohash serve: listening on http://{host}:{port} (docs /docs); model {health['model']} "
               f"({health['bits']} bits, {', '.join(health['modalities'])}, encoder {health['backend']}"
               f"{' (auto)' if backend == 'auto' else ''}); store {health['store']} with {health['templates']} "
               f"templates; matcher {health['matcher']}{' (auto)' if matcher == 'auto' else ''}; {len(keys)} API keys; "
               f"{'protected templates; ' if health['protected'] else ''}"
               f"{'asymmetric matching; ' if health['asymmetric'] else ''}requests logged to "
               f"{audit_log or 'stderr'}; ready in {time.perf_counter() - started:.1f} s", err=True)
    if asymmetric and not any(m.endswith("-asym") for m in dep.thresholds):
        typer.echo("warning: the bundle has no asymmetric ('-asym') thresholds (exported before asymmetric matching): "
                   "only keys with the 'scores' scope can match; export the run again", err=True)
    uvicorn.run(create_app(dep, keys, max_body_bytes=int(max_body_mb * 2**20), max_pixels=max_pixels, rate_limit=rate_limit,
                           failed_auth_limit=failed_auth_limit, body_timeout=body_timeout),
                host=host, port=port, log_level="warning")
