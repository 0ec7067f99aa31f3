"""REST service: enroll / verify / identify / delete / health over a Deployment (FastAPI + uvicorn).

Every route but /health needs an API key in the X-API-Key header (compared in constant time); what a key may
do is its scopes (biohash.access: enroll, match, codes, scores). By default answers carry a decision and a
coarse score band, not distances, and probes are images, not raw codes: a caller cannot rebuild a template
bit by bit. Bodies are JSON (images base64, or codes hex with the `codes` scope) or multipart uploads (one
file field per modality). Bodies over the size limit are refused before they are read (413), a body without
Content-Length is refused (411), images declaring too many pixels before they are decoded (413), requests
over a key's rate limit get 429. Every error body is one line that never echoes the request; every request
leaves one audit line (key id, route, subject, status, decision; never an image or a code).
"""
from __future__ import annotations

import base64
import binascii
import hmac
import logging

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from biohash.access import ApiKey, RateLimiter
from biohash.deployment import Decision, Deployment, NotFound, RequestError
from biohash.images import ImageError, ImageTooLarge, decode_image

log = logging.getLogger("biohash.service")
audit = logging.getLogger("biohash.audit")


class Forbidden(RequestError):
    """The key lacks the scope a request needs (HTTP 403)."""


class Probe(BaseModel):
    images: dict[str, str] | None = Field(None, max_length=8, description="modality -> base64 image (PNG, JPEG, BMP)")
    codes: dict[str, str] | None = Field(None, max_length=8, description="modality -> hex codes (needs the "
                                         "'codes' scope: devices that encode locally)")


class EnrollRequest(Probe):
    subject: str = Field(..., min_length=1, max_length=128)


class VerifyRequest(Probe):
    subject: str = Field(..., min_length=1, max_length=128)
    against: str | None = Field(None, max_length=32, description="gallery modality (cross mode: a print probe "
                                "against vein)")


class IdentifyRequest(Probe):
    against: str | None = Field(None, max_length=32)
    k: int = Field(5, ge=1, le=100)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": _one_line(detail)}, status_code=status, headers=headers)


def api_docs_html(schema: dict) -> str:
    """A self-contained HTML page of the API from its OpenAPI schema (works offline: no script, no CDN)."""
    from html import escape

    rows = []
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []) if p.get("in") != "header")
            body = op.get("requestBody", {}).get("content", {})
            kinds = ", ".join(body) if body else ""
            ref = next((c.get("schema", {}).get("$ref", "") for c in body.values()), "").rsplit("/", 1)[-1]
            fields = ""
            if ref:
                props = schema["components"]["schemas"][ref].get("properties", {})
                fields = "<br>".join(f"<code>{escape(k)}</code>: {escape(v.get('description', v.get('type', '')) or '')}"
                                     for k, v in props.items())
            rows.append(f"<tr><td><b>{method.upper()}</b> <code>{escape(path)}</code></td>"
                        f"<td>{escape(op.get('summary', ''))}</td><td>{escape(params)}</td>"
                        f"<td>{escape(kinds)}<br>{fields}</td></tr>")
    info = schema.get("info", {})
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(info.get('title', 'API'))}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{border-top:1px solid #ccc;padding:.4em;"
            "vertical-align:top}</style></head><body>"
            f"<h1>{escape(info.get('title', ''))} {escape(str(info.get('version', '')))}</h1>"
            f"<p>{escape(info.get('description', ''))} Every /v1 route needs an <code>X-API-Key</code> header; "
            "what a key may do is its scopes (enroll, match, codes, scores). Machine-readable schema: "
            "<a href='/openapi.json'>/openapi.json</a>.</p>"
            "<table><tr><th>route</th><th>what</th><th>parameters</th><th>body</th></tr>"
            + "".join(rows) + "</table></body></html>")


def create_app(deployment: Deployment, api_keys: list[str | ApiKey], max_body_bytes: int = 4 * 2**20,
               max_pixels: int | None = None, rate_limit: int = 600):
    """The FastAPI app; refuses to start without at least one API key. Plain strings are keys with the default
    scopes; `rate_limit` is requests per minute per key (0: none); `max_pixels` caps decoded images."""
    keys = [k if isinstance(k, ApiKey) else ApiKey(k) for k in api_keys if k]
    if not keys:
        raise ValueError("the service needs at least one API key (no key, no access)")
    limiter = RateLimiter(rate_limit)
    app = FastAPI(title="biohash", version="1", description="Biometric hashing: enroll, verify, identify.",
                  docs_url=None, redoc_url=None)  # /docs is served below from the schema itself: no CDN

    @app.middleware("http")
    async def limit_body_and_audit(request: Request, call_next):
        request.state.audit = {}
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            if length is None:
                response = _error(411, "Content-Length required")
            elif not length.isdigit() or int(length) > max_body_bytes:
                response = _error(413, f"body larger than {max_body_bytes} bytes")
            else:
                response = await call_next(request)
        else:
            response = await call_next(request)
        route = request.scope.get("route")  # the route's template: a path may carry the caller's bytes
        path = route.path if route else _one_line(request.url.path.encode("unicode_escape").decode(), 80)
        fields = " ".join(f"{k}={v}" for k, v in request.state.audit.items())
        audit.info("%s %s key=%s status=%d %s", request.method, path, getattr(request.state, "key_id", "-"),
                   response.status_code, fields)
        return response

    @app.exception_handler(Forbidden)
    async def forbidden(_, err: Forbidden):
        return _error(403, str(err))

    @app.exception_handler(ImageTooLarge)
    async def too_large(_, err: ImageTooLarge):
        return _error(413, str(err))

    @app.exception_handler(ImageError)
    async def bad_image(_, err: ImageError):
        return _error(400, str(err))

    @app.exception_handler(RequestError)
    async def bad_request(_, err: RequestError):
        return _error(400, str(err))

    @app.exception_handler(NotFound)
    async def not_found(_, err: NotFound):
        return _error(404, str(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(_, err: RequestValidationError):  # pydantic's list echoes the input: name field and rule only
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        loc = list(first.get("loc", ()))  # only the top-level field: deeper parts are the caller's own keys
        where = loc[1] if len(loc) > 1 and loc[0] == "body" and isinstance(loc[1], str) else "body"
        more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
        return _error(422, f"{where}: {first.get('msg', 'invalid')}{more}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_, err: StarletteHTTPException):
        return _error(err.status_code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def internal(_, err: Exception):  # logged for the operator; the caller gets no traceback
        log.exception("internal error")
        return _error(500, "internal error")

    def caller(request: Request, x_api_key: str | None) -> ApiKey:
        given = (x_api_key or "").encode()
        found = None
        for k in keys:  # check every key: the time does not depend on which one matched
            if hmac.compare_digest(given, k.secret.encode()):
                found = k
        if found is None:
            raise HTTPException(status_code=401, detail="missing or invalid API key (X-API-Key header)")
        request.state.key_id = found.id
        wait = limiter.wait_needed(found.id)
        if wait:
            raise HTTPException(status_code=429, detail=f"rate limit of {rate_limit} requests per minute reached",
                                headers={"Retry-After": str(max(1, round(wait)))})
        return found

    def auth(request: Request, x_api_key: str | None = Header(None)) -> ApiKey:
        return caller(request, x_api_key)

    def need(key: ApiKey, scope: str) -> None:
        if scope not in key.scopes:
            raise Forbidden(f"this API key lacks the {scope!r} scope")

    def modalities(names) -> None:
        unknown = [m for m in names if m not in deployment.encoder.modalities]
        if unknown:  # not echoed: a name is the caller's input
            raise RequestError(f"unknown modality; this model takes {', '.join(deployment.encoder.modalities)}")

    def probe_codes(key: ApiKey, probe: Probe) -> dict:
        if bool(probe.images) == bool(probe.codes):
            raise RequestError("give either 'images' or 'codes' (one entry per modality)")
        modalities(probe.codes or probe.images)
        if probe.codes:
            need(key, "codes")
            return deployment.codes_from_hex(probe.codes)
        images = {}
        for m, text in probe.images.items():
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(f"{m}: image is not valid base64") from None
            images[m] = decode_image(data, m, max_pixels=max_pixels)
        return deployment.codes_from_images(images)

    def answer(d: Decision, key: ApiKey) -> dict:
        out = {"mode": d.mode, "match": d.match, "band": deployment.band(d.distance)}
        if "scores" in key.scopes:
            out |= {"distance": d.distance, "threshold": d.threshold}
        return out

    def candidates(found: list[dict], key: ApiKey) -> list[dict]:
        shown = ("subject", "mode", "match", "band") + (("distance",) if "scores" in key.scopes else ())
        return [{k: c[k] for k in shown} for c in found]

    def note(request: Request, **fields) -> None:
        request.state.audit.update({k: v for k, v in fields.items() if v is not None})

    @app.get("/health")
    def health() -> dict:
        return deployment.health()

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(api_docs_html(app.openapi()))

    @app.post("/v1/enroll")
    def enroll(req: EnrollRequest, request: Request, key: ApiKey = Depends(auth)) -> dict:
        need(key, "enroll")
        note(request, subject=deployment.check_subject(req.subject))
        ids = deployment.enroll(req.subject, probe_codes(key, req))
        note(request, decision="enrolled")
        return {"subject": req.subject, "template_ids": ids}

    @app.post("/v1/verify")
    def verify(req: VerifyRequest, request: Request, key: ApiKey = Depends(auth)) -> dict:
        need(key, "match")
        note(request, subject=deployment.check_subject(req.subject))
        d = deployment.verify(req.subject, probe_codes(key, req), req.against)
        note(request, mode=d.mode, decision={True: "match", False: "no-match"}.get(d.match, "unknown"))
        return {"subject": req.subject, **answer(d, key)}

    @app.post("/v1/identify")
    def identify(req: IdentifyRequest, request: Request, key: ApiKey = Depends(auth)) -> dict:
        need(key, "match")
        found = deployment.identify(probe_codes(key, req), req.against, req.k)
        note(request, candidates=len(found), decision="match" if any(c["match"] for c in found) else "no-match")
        return {"candidates": candidates(found, key)}

    @app.delete("/v1/subjects/{subject}")
    def delete(subject: str, request: Request, key: ApiKey = Depends(auth)) -> dict:
        need(key, "enroll")
        note(request, subject=deployment.check_subject(subject))
        n = deployment.delete(subject)
        note(request, decision="deleted")
        return {"subject": subject, "deleted": n}

    async def uploads(request: Request) -> tuple[dict, dict]:
        """Form fields and image bytes; pixels are decoded later, off the event loop."""
        form = await request.form(max_files=8, max_fields=8)
        fields, files = {}, {}
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields[name] = value
            else:
                files[name] = await value.read()
        if not files:
            raise RequestError("no image uploaded: send one file field per modality (e.g. print=@palm.png)")
        return fields, files

    def codes_of(files: dict) -> dict:
        modalities(files)
        images = {m: decode_image(data, m, max_pixels=max_pixels) for m, data in files.items()}
        return deployment.codes_from_images(images)

    def subject_field(request: Request, fields: dict) -> str:
        if not fields.get("subject"):
            raise RequestError("form field 'subject' is required")
        note(request, subject=deployment.check_subject(fields["subject"]))
        return fields["subject"]

    @app.post("/v1/upload/enroll")
    async def enroll_upload(request: Request, key: ApiKey = Depends(auth)) -> dict:
        need(key, "enroll")
        fields, files = await uploads(request)
        subject = subject_field(request, fields)
        ids = await run_in_threadpool(lambda: deployment.enroll(subject, codes_of(files)))
        note(request, decision="enrolled")
        return {"subject": subject, "template_ids": ids}

    @app.post("/v1/upload/verify")
    async def verify_upload(request: Request, key: ApiKey = Depends(auth)) -> dict:
        need(key, "match")
        fields, files = await uploads(request)
        subject = subject_field(request, fields)
        d = await run_in_threadpool(lambda: deployment.verify(subject, codes_of(files), fields.get("against")))
        note(request, mode=d.mode, decision={True: "match", False: "no-match"}.get(d.match, "unknown"))
        return {"subject": subject, **answer(d, key)}

    @app.post("/v1/upload/identify")
    async def identify_upload(request: Request, key: ApiKey = Depends(auth)) -> dict:
        need(key, "match")
        fields, files = await uploads(request)
        k = fields.get("k", "5")
        if not k.isdigit() or not 1 <= int(k) <= 100:
            raise RequestError("form field 'k' must be a whole number from 1 to 100")
        found = await run_in_threadpool(lambda: deployment.identify(codes_of(files), fields.get("against"), int(k)))
        note(request, candidates=len(found), decision="match" if any(c["match"] for c in found) else "no-match")
        return {"candidates": candidates(found, key)}

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
