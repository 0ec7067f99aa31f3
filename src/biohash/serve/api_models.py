"""The service's request bodies and the OpenAPI description of every route's fields (the upload routes read
their multipart form themselves, so their fields are declared here by hand), and the API-key scheme, so
/docs (Swagger UI) and /redoc show every field and "Authorize" works."""
from __future__ import annotations

from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="api_key",
                       description="an API key from the server's --api-key-file; its scopes (enroll, match, codes, "
                                   "scores) say what it may do")
API_DESCRIPTION = ("Biometric hashing: enroll palms, verify a claimed identity, identify among the enrolled. Every "
                   "/v1 route needs an X-API-Key header. Answers carry a decision at the model's threshold and a "
                   "score band; exact distances need the 'scores' scope, raw hex codes the 'codes' scope.")
_SUBJECT = "subject id: 1-128 characters from A-Z a-z 0-9 . _ @ : + -, starting with a letter or digit"
_AGAINST = ("gallery modality to match against: omit for same-modality matching (print probe vs print "
            "templates); 'vein' with a print probe is cross mode, 'print' with a vein probe cross-rev")
_K = "number of candidates to return, 1-100 (without the 'scores' scope only candidates that match are listed)"


class Probe(BaseModel):
    images: dict[str, str] | None = Field(None, max_length=8, description="modality (print, vein) -> base64 image "
                                          "(PNG, JPEG, BMP or TIFF)", examples=[{"print": "iVBORw0KGgo..."}])
    codes: dict[str, str] | None = Field(None, max_length=8, description="modality -> hex code (needs the "
                                         "'codes' scope: devices that encode locally)",
                                         examples=[{"print": "0f3a9c..."}])


class EnrollRequest(Probe):
    subject: str = Field(..., min_length=1, max_length=128, description=_SUBJECT, examples=["alice"])


class VerifyRequest(Probe):
    subject: str = Field(..., min_length=1, max_length=128, description=_SUBJECT, examples=["alice"])
    against: str | None = Field(None, max_length=32, description=_AGAINST, examples=["vein"])


class IdentifyRequest(Probe):
    against: str | None = Field(None, max_length=32, description=_AGAINST)
    k: int = Field(5, ge=1, le=100, description=_K)


class BatchIdentifyRequest(BaseModel):
    probes: list[Probe] = Field(..., min_length=1, max_length=64, description="up to 64 probes, each with "
                                "'images' or 'codes' as in /v1/identify")
    against: str | None = Field(None, max_length=32, description=_AGAINST)
    k: int = Field(5, ge=1, le=100, description=_K)


def _form(fields: dict[str, dict], required: list[str]) -> dict:
    """openapi_extra of a multipart route: its form fields, described."""
    images = {m: {"type": "string", "format": "binary", "description": f"{m} image file (PNG, JPEG, BMP or TIFF); "
                  f"give print, vein or both"} for m in ("print", "vein")}
    schema = {"type": "object", "properties": {**images, **fields}, "required": required}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


UPLOAD_ENROLL = _form({"subject": {"type": "string", "description": _SUBJECT}}, ["subject"])
UPLOAD_VERIFY = _form({"subject": {"type": "string", "description": _SUBJECT},
                       "against": {"type": "string", "description": _AGAINST}}, ["subject"])
UPLOAD_IDENTIFY = _form({"against": {"type": "string", "description": _AGAINST},
                         "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5, "description": _K}}, [])
