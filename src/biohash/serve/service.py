"""REST service: enroll / verify / identify / delete / health over a Deployment (FastAPI + uvicorn).

Every route but /health needs an API key in the X-API-Key header (compared in constant time); what a key may
do is its scopes (biohash.serve.access: enroll, match, codes, scores). By default answers carry a decision and a
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
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from biohash import __version__
from biohash.imaging.images import ImageError, ImageTooLarge, decode_image
from biohash.serve.access import ApiKey, RateLimiter
from biohash.serve.api_models import (
    API_DESCRIPTION,
    API_KEY,
    UPLOAD_ENROLL,
    UPLOAD_IDENTIFY,
    UPLOAD_VERIFY,
    BatchIdentifyRequest,
    EnrollRequest,
    IdentifyRequest,
    Probe,
    VerifyRequest,
)
from biohash.serve.deployment import Decision, Deployment, NotFound, RequestError
from biohash.serve.disclosure import answer, candidates, checked_identify, checked_identify_many, checked_verify
from biohash.serve.http_guards import BodyDeadline, GuardAndAudit, _error

log = logging.getLogger("biohash.serve.service")


class Forbidden(RequestError):
    """The key lacks the scope a request needs (HTTP 403)."""


@dataclass
class ServiceState:
    """What the routes share, kept on app.state: the deployment and the access rules."""

    deployment: Deployment
    keys: list[ApiKey]
    limiter: RateLimiter
    failed_auth: RateLimiter  # per client address: wrong or missing keys
    max_body_bytes: int
    max_pixels: int | None


def _state(request: Request) -> ServiceState:
    return request.app.state.biohash


# ---- middleware and error handlers ---------------------------------------------------------------------------

async def _invalid(_, err: RequestValidationError):
    """pydantic's error list echoes the input: name the top-level field and the rule only."""
    errors = err.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = list(first.get("loc", ()))  # deeper parts are the caller's own keys
    where = loc[1] if len(loc) > 1 and loc[0] == "body" and isinstance(loc[1], str) else "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _error(422, f"{where}: {first.get('msg', 'invalid')}{more}")


async def _http_error(_, err: StarletteHTTPException):
    return _error(err.status_code, str(err.detail), getattr(err, "headers", None))


async def _internal(_, err: Exception):  # logged for the operator; the caller gets no traceback
    log.exception("internal error")
    return _error(500, "internal error")


def _status(code: int):
    async def handler(_, err: Exception):
        return _error(code, str(err))

    return handler


# Starlette picks the handler of the most specific class: Forbidden before RequestError, ImageTooLarge before
# ImageError
HANDLERS = [(Forbidden, _status(403)), (ImageTooLarge, _status(413)), (ImageError, _status(400)),
            (RequestError, _status(400)), (NotFound, _status(404)), (RequestValidationError, _invalid),
            (StarletteHTTPException, _http_error), (Exception, _internal)]


# ---- access ----------------------------------------------------------------------------------------------------

def find_key(st: ServiceState, given: str | None) -> ApiKey | None:
    """The key matching `given`, compared in constant time against every key (the time does not depend on
    which one matched)."""
    raw, found = (given or "").encode(), None
    for k in st.keys:
        if hmac.compare_digest(raw, k.secret.encode()):
            found = k
    return found


def _too_many(limiter: RateLimiter, wait: float, what: str) -> HTTPException:
    return HTTPException(status_code=429, detail=f"rate limit of {limiter.per_minute} {what} per minute reached",
                         headers={"Retry-After": str(max(1, round(wait)))})


async def auth(request: Request, x_api_key: str | None = Depends(API_KEY)) -> ApiKey:
    """The caller's key, counted against its rate limit. Wrong keys count against the client address's own
    limit: past it the address is refused (429) before any key is compared, so keys cannot be guessed fast."""
    st = _state(request)
    address = request.client.host if request.client else "-"
    blocked = st.failed_auth.wait_needed(address, count=False)
    if blocked:
        raise _too_many(st.failed_auth, blocked, "failed authentications")
    found = find_key(st, x_api_key)
    if found is None:
        st.failed_auth.wait_needed(address)
        raise HTTPException(status_code=401, detail="missing or invalid API key (X-API-Key header)")
    request.state.key_id = found.id
    wait = st.limiter.wait_needed(found.id)
    if wait:
        raise _too_many(st.limiter, wait, "requests")
    return found


def need(key: ApiKey, scope: str) -> None:
    if scope not in key.scopes:
        raise Forbidden(f"this API key lacks the {scope!r} scope")


def note(request: Request, **fields) -> None:
    """Fields of this request's audit line."""
    request.state.audit.update({k: v for k, v in fields.items() if v is not None})


# ---- probes and answers ----------------------------------------------------------------------------------------

def probe_codes(st: ServiceState, key: ApiKey, probe: Probe) -> dict:
    """Codes of a JSON probe: hex codes (with the 'codes' scope) or base64 images encoded here."""
    dep = st.deployment
    if bool(probe.images) == bool(probe.codes):
        raise RequestError("give either 'images' or 'codes' (one entry per modality)")
    dep.check_modalities(probe.codes or probe.images or {})  # before decoding anything
    if probe.codes:
        need(key, "codes")
        return dep.codes_from_hex(probe.codes)
    images = {}
    for m, text in (probe.images or {}).items():
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"{m}: image is not valid base64") from None
        images[m] = decode_image(data, m, max_pixels=st.max_pixels)
    return dep.codes_from_images(images)


def upload_codes(st: ServiceState, files: dict) -> dict:
    st.deployment.check_modalities(files)  # before decoding anything
    images = {m: decode_image(data, m, max_pixels=st.max_pixels) for m, data in files.items()}
    return st.deployment.codes_from_images(images)


def _decision(d: Decision) -> str:
    return "unknown" if d.match is None else "match" if d.match else "no-match"


def _note_found(request: Request, found: list[dict]) -> None:
    note(request, candidates=len(found), decision="match" if any(c["match"] for c in found) else "no-match")


# ---- routes ------------------------------------------------------------------------------------------------------
# Routes are async and hand their work to the thread pool at most once: sync routes and dependencies cost a
# thread hop each (12 a request were seen), which on a busy machine took longer than the search itself.


async def offload(work, probe: Probe, deployment: Deployment):
    """A route's work: inline when the probe brings codes and the deployment is free (a search under its lock,
    shorter than the thread hop: 1.0 against 2.3 ms a request through the app at 100k templates), in the thread
    pool when images are to be decoded and encoded (tens of ms), or when another request holds the lock (an
    enrollment waiting on a busy database must not stall the event loop)."""
    if probe.codes and not probe.images and not deployment.busy():
        return work()
    return await run_in_threadpool(work)


router = APIRouter()


@router.get("/health")
async def health(request: Request, x_api_key: str | None = Depends(API_KEY)) -> dict:
    """Liveness for anyone; the model, counts and matcher only for a valid key (they help an attacker plan)."""
    st = _state(request)
    if x_api_key and find_key(st, x_api_key) is not None:
        return await run_in_threadpool(st.deployment.health)
    return {"status": "ok"}


@router.post("/v1/enroll")
async def enroll(req: EnrollRequest, request: Request, key: ApiKey = Depends(auth)) -> dict:
    return await run_in_threadpool(_enroll, req, request, key)


def _enroll(req: EnrollRequest, request: Request, key: ApiKey) -> dict:
    st = _state(request)
    need(key, "enroll")
    note(request, subject=st.deployment.check_subject(req.subject))
    ids = st.deployment.enroll(req.subject, probe_codes(st, key, req))
    note(request, decision="enrolled")
    return {"subject": req.subject, "template_ids": ids}


@router.post("/v1/verify")
async def verify(req: VerifyRequest, request: Request, key: ApiKey = Depends(auth)) -> dict:
    return await offload(lambda: _verify(req, request, key), req, _state(request).deployment)


def _verify(req: VerifyRequest, request: Request, key: ApiKey) -> dict:
    st = _state(request)
    need(key, "match")
    note(request, subject=st.deployment.check_subject(req.subject))
    d = checked_verify(st.deployment, key, req.subject, probe_codes(st, key, req), req.against)
    note(request, mode=d.mode, decision=_decision(d))
    return {"subject": req.subject, **answer(st.deployment, d, key)}


@router.post("/v1/identify")
async def identify(req: IdentifyRequest, request: Request, key: ApiKey = Depends(auth)) -> dict:
    return await offload(lambda: _identify(req, request, key), req, _state(request).deployment)


def _identify(req: IdentifyRequest, request: Request, key: ApiKey) -> dict:
    st = _state(request)
    need(key, "match")
    found = checked_identify(st.deployment, key, probe_codes(st, key, req), req.against, req.k)
    _note_found(request, found)
    return {"candidates": candidates(found, key)}


@router.post("/v1/identify/batch")
async def identify_batch(req: BatchIdentifyRequest, request: Request, key: ApiKey = Depends(auth)) -> dict:
    return await run_in_threadpool(_identify_batch, req, request, key)


def _identify_batch(req: BatchIdentifyRequest, request: Request, key: ApiKey) -> dict:
    """Several probes in one request (one answer each, in order): the HTTP cost is paid once."""
    st = _state(request)
    need(key, "match")
    probes = [probe_codes(st, key, p) for p in req.probes]
    found = checked_identify_many(st.deployment, key, probes, req.against, req.k)
    note(request, probes=len(found), candidates=sum(len(f) for f in found))
    return {"results": [{"candidates": candidates(f, key)} for f in found]}


@router.delete("/v1/subjects/{subject}")
async def delete(subject: str, request: Request, key: ApiKey = Depends(auth)) -> dict:
    return await run_in_threadpool(_delete, subject, request, key)


def _delete(subject: str, request: Request, key: ApiKey) -> dict:
    st = _state(request)
    need(key, "enroll")
    note(request, subject=st.deployment.check_subject(subject))
    n = st.deployment.delete(subject)
    note(request, decision="deleted")
    return {"subject": subject, "deleted": n}


async def uploads(request: Request) -> tuple[dict, dict]:
    """Form fields and image bytes of a multipart upload; pixels are decoded later, off the event loop."""
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


async def subject_upload(request: Request) -> tuple[dict, dict, str]:
    """Fields, files and the checked subject of an upload that names one (enroll, verify)."""
    fields, files = await uploads(request)
    if not fields.get("subject"):
        raise RequestError("form field 'subject' is required")
    note(request, subject=_state(request).deployment.check_subject(fields["subject"]))
    return fields, files, fields["subject"]


@router.post("/v1/upload/enroll", openapi_extra=UPLOAD_ENROLL)
async def enroll_upload(request: Request, key: ApiKey = Depends(auth)) -> dict:
    st = _state(request)
    need(key, "enroll")
    _, files, subject = await subject_upload(request)
    ids = await run_in_threadpool(lambda: st.deployment.enroll(subject, upload_codes(st, files)))
    note(request, decision="enrolled")
    return {"subject": subject, "template_ids": ids}


@router.post("/v1/upload/verify", openapi_extra=UPLOAD_VERIFY)
async def verify_upload(request: Request, key: ApiKey = Depends(auth)) -> dict:
    st = _state(request)
    need(key, "match")
    fields, files, subject = await subject_upload(request)
    d = await run_in_threadpool(lambda: checked_verify(st.deployment, key, subject, upload_codes(st, files),
                                                       fields.get("against")))
    note(request, mode=d.mode, decision=_decision(d))
    return {"subject": subject, **answer(st.deployment, d, key)}


@router.post("/v1/upload/identify", openapi_extra=UPLOAD_IDENTIFY)
async def identify_upload(request: Request, key: ApiKey = Depends(auth)) -> dict:
    st = _state(request)
    need(key, "match")
    fields, files = await uploads(request)
    k = fields.get("k", "5")
    if not k.isdigit() or not 1 <= int(k) <= 100:
        raise RequestError("form field 'k' must be a whole number from 1 to 100")
    found = await run_in_threadpool(lambda: checked_identify(st.deployment, key, upload_codes(st, files),
                                                             fields.get("against"), int(k)))
    _note_found(request, found)
    return {"candidates": candidates(found, key)}


def create_app(deployment: Deployment, api_keys: Sequence[str | ApiKey], *, max_body_bytes: int = 4 * 2**20,
               max_pixels: int | None = None, rate_limit: int = 600, failed_auth_limit: int = 30,
               body_timeout: float = 10.0) -> FastAPI:
    """The FastAPI app over one deployment; refuses to start without at least one API key. Plain strings are
    keys with the default scopes; `rate_limit` is requests per minute per key (0: none); `max_pixels` caps
    decoded images; `failed_auth_limit` is wrong-key requests per minute per client address; a body not
    received within `body_timeout` seconds is answered 408 and the connection closed."""
    keys = [k if isinstance(k, ApiKey) else ApiKey(k) for k in api_keys if k]
    if not keys:
        raise ValueError("the service needs at least one API key (no key, no access)")
    from fastapi_offline import FastAPIOffline

    # Swagger UI at /docs and ReDoc at /redoc from files packaged with fastapi-offline: no CDN, works offline
    app = FastAPIOffline(title="biohash", version=__version__, description=API_DESCRIPTION)
    app.state.biohash = ServiceState(deployment=deployment, keys=keys, limiter=RateLimiter(rate_limit),
                                     failed_auth=RateLimiter(failed_auth_limit), max_body_bytes=max_body_bytes,
                                     max_pixels=max_pixels)
    app.add_middleware(BodyDeadline, seconds=body_timeout)  # inside: the size check runs before any body is read
    app.add_middleware(GuardAndAudit, max_body_bytes=max_body_bytes)
    for kind, handler in HANDLERS:
        app.add_exception_handler(kind, handler)
    app.include_router(router)
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
