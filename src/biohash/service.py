"""REST service: enroll / verify / identify / delete / health over a Deployment (FastAPI + uvicorn).

Every route but /health needs an API key in the X-API-Key header (compared in constant time). Bodies are
JSON (images base64, or codes hex) or multipart uploads (one file field per modality). Bodies over the size
limit are refused before they are read (413); a body without Content-Length is refused (411). Bad inputs give
a 4xx with a one-line reason, never a traceback.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import logging

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from biohash.deployment import Decision, Deployment, NotFound, RequestError

log = logging.getLogger("biohash.service")


class Probe(BaseModel):
    images: dict[str, str] | None = Field(None, description="modality -> base64 image (PNG, JPEG, BMP)")
    codes: dict[str, str] | None = Field(None, description="modality -> hex codes (devices that encode locally)")


class EnrollRequest(Probe):
    subject: str = Field(..., min_length=1, max_length=200)


class VerifyRequest(Probe):
    subject: str = Field(..., min_length=1, max_length=200)
    against: str | None = Field(None, description="gallery modality (cross mode: a print probe against vein)")


class IdentifyRequest(Probe):
    against: str | None = None
    k: int = Field(5, ge=1, le=100)


def decode_image(data: bytes, where: str) -> np.ndarray:
    import cv2

    if not data:
        raise RequestError(f"{where}: empty image")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise RequestError(f"{where}: not a readable image (PNG, JPEG or BMP expected)")
    return img


def _probe_codes(dep: Deployment, probe: Probe) -> dict:
    if bool(probe.images) == bool(probe.codes):
        raise RequestError("give either 'images' or 'codes' (one entry per modality)")
    if probe.codes:
        return dep.codes_from_hex(probe.codes)
    images = {}
    for m, text in probe.images.items():
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"{m}: image is not valid base64") from None
        images[m] = decode_image(data, m)
    return dep.codes_from_images(images)


def _decision(d: Decision) -> dict:
    return {"mode": d.mode, "distance": d.distance, "threshold": d.threshold, "match": d.match}


def create_app(deployment: Deployment, api_keys: list[str], max_body_bytes: int = 4 * 2**20):
    """The FastAPI app; refuses to start without at least one API key."""
    keys = [k.encode() for k in api_keys if k]
    if not keys:
        raise ValueError("the service needs at least one API key (no key, no access)")
    app = FastAPI(title="biohash", version="1", description="Biometric hashing: enroll, verify, identify.")

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"detail": "Content-Length required"}, status_code=411)
            if not length.isdigit() or int(length) > max_body_bytes:
                return JSONResponse({"detail": f"body larger than {max_body_bytes} bytes"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(RequestError)
    async def bad_request(_, err: RequestError):
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.exception_handler(NotFound)
    async def not_found(_, err: NotFound):
        return JSONResponse({"detail": str(err)}, status_code=404)

    @app.exception_handler(Exception)
    async def internal(_, err: Exception):  # logged for the operator; the caller gets no traceback
        log.exception("internal error")
        return JSONResponse({"detail": "internal error"}, status_code=500)

    def api_key(x_api_key: str | None = Header(None)) -> None:
        given = (x_api_key or "").encode()
        ok = False
        for k in keys:  # check every key: the time does not depend on which one matched
            ok |= hmac.compare_digest(given, k)
        if not ok:
            raise HTTPException(status_code=401, detail="missing or invalid API key (X-API-Key header)")

    auth = [Depends(api_key)]

    @app.get("/health")
    def health() -> dict:
        return deployment.health()

    @app.post("/v1/enroll", dependencies=auth)
    def enroll(req: EnrollRequest) -> dict:
        ids = deployment.enroll(req.subject, _probe_codes(deployment, req))
        return {"subject": req.subject, "template_ids": ids}

    @app.post("/v1/verify", dependencies=auth)
    def verify(req: VerifyRequest) -> dict:
        return {"subject": req.subject, **_decision(deployment.verify(req.subject, _probe_codes(deployment, req),
                                                                      req.against))}

    @app.post("/v1/identify", dependencies=auth)
    def identify(req: IdentifyRequest) -> dict:
        return {"candidates": deployment.identify(_probe_codes(deployment, req), req.against, req.k)}

    @app.delete("/v1/subjects/{subject}", dependencies=auth)
    def delete(subject: str) -> dict:
        return {"subject": subject, "deleted": deployment.delete(subject)}

    async def _uploads(request: Request) -> tuple[dict, dict[str, np.ndarray]]:
        form = await request.form()
        fields, images = {}, {}
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields[name] = value
            else:
                images[name] = decode_image(await value.read(), name)
        if not images:
            raise RequestError("no image uploaded: send one file field per modality (e.g. print=@palm.png)")
        return fields, images

    def _subject(fields: dict) -> str:
        if not fields.get("subject"):
            raise RequestError("form field 'subject' is required")
        return fields["subject"]

    @app.post("/v1/upload/enroll", dependencies=auth)
    async def enroll_upload(request: Request) -> dict:
        fields, images = await _uploads(request)
        subject = _subject(fields)
        return {"subject": subject, "template_ids": deployment.enroll(subject, deployment.codes_from_images(images))}

    @app.post("/v1/upload/verify", dependencies=auth)
    async def verify_upload(request: Request) -> dict:
        fields, images = await _uploads(request)
        subject = _subject(fields)
        decision = deployment.verify(subject, deployment.codes_from_images(images), fields.get("against"))
        return {"subject": subject, **_decision(decision)}

    @app.post("/v1/upload/identify", dependencies=auth)
    async def identify_upload(request: Request) -> dict:
        fields, images = await _uploads(request)
        k = fields.get("k", "5")
        if not k.isdigit():
            raise RequestError("form field 'k' must be a whole number")
        return {"candidates": deployment.identify(deployment.codes_from_images(images), fields.get("against"),
                                                  int(k))}

    return app


def wait_until_healthy(url: str, process=None, timeout: float = 60.0) -> float:
    """Poll URL/health until the service answers 200 (for scripts and tests that start `biohash serve`);
    returns the seconds waited. Raises if `process` (a Popen) exits first or the timeout passes."""
    import time

    import httpx

    start = time.perf_counter()
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode} before answering")
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"no answer from {url}/health within {timeout:.0f} s")
        time.sleep(0.2)
