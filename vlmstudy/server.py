"""The HTTP API: ``POST /describe``, ``POST /vqa``, ``GET /health``, ``GET /models``, docs at ``/docs``.

``vlmstudy serve`` runs it with uvicorn on 127.0.0.1; :func:`create_app` builds it (tests use
FastAPI's test client on it). It is a thin layer on :class:`vlmstudy.inference.Inference`::

    curl -F image=@assets/images/shapes-1.png http://127.0.0.1:8000/describe
    curl -F image=@assets/images/shapes-1.png -F question="what colour is the triangle?" http://127.0.0.1:8000/vqa

Uploads are untrusted, so: the body is read into memory only, up to a byte limit (a larger
``Content-Length`` is refused before reading); the multipart form is parsed in memory (never a
temporary file, and the client's file name is read by nobody); the image is recognised by its
content among :data:`vlmstudy.images.UPLOAD_FORMATS`, and its declared size is checked before it
is decoded (decompression bombs). Every error is a JSON ``{"error": CODE, "detail": MESSAGE}``
with a 4xx status: 400 malformed request, 413 too large, 415 not an image, 422 a field missing
or unusable (a question too long for the model's context included), 503 a model that cannot be
loaded. A client's mistake, or a client that hangs up mid-upload, is one line in the log (logger
``vlmstudy.server``, level INFO), never a traceback; only a failure of the server itself logs its
traceback, once, and answers 500. The models are loaded once, when the app is built;
concurrent requests decode their images in parallel and take turns on the model
(:class:`~vlmstudy.inference.Inference` holds a lock around generation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .errors import (
    ConfigError,
    ImageError,
    ImageTooLargeError,
    ModelUnavailableError,
    NotAnImageError,
    VlmStudyError,
    check_positive_int,
)
from .images import UPLOAD_FORMATS, load_image_bytes
from .inference import Inference
from .tasks import ContextLengthError

__all__ = ["create_app", "RequestError", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "MAX_TEXT_CHARS"]

log = logging.getLogger("vlmstudy.server")

#: Largest image file accepted, in bytes (``vlmstudy serve --max-upload-mb``).
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: Largest image accepted, in pixels: a server decodes many at once, so less than load_image's 64 M.
MAX_UPLOAD_PIXELS = 16_000_000
#: Longest question or prompt, in characters.
MAX_TEXT_CHARS = 500
#: Most tokens a client may ask for per answer.
MAX_NEW_TOKENS = 128
# room in the body for the text fields and the multipart boundaries and headers
_FORM_OVERHEAD = 64 * 1024
_MAX_PARTS = 8


class RequestError(VlmStudyError):
    """A request the server refuses: HTTP ``status``, a short machine ``code`` and the message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


# ----------------------------------------------------------------------------- responses (documented in /docs)

class DescribeResponse(BaseModel):
    model: str
    description: str


class VqaResponse(BaseModel):
    model: str
    question: str
    answer: str


class HealthResponse(BaseModel):
    status: str
    version: str
    mode: str
    device: str
    models: dict[str, str]


class ModelInfo(BaseModel):
    name: str
    hub_id: str
    family: str
    tasks: list[str]
    available: bool
    serves: list[str]


class ModelsResponse(BaseModel):
    mode: str
    serving: dict[str, str]
    models: list[ModelInfo]


class ErrorResponse(BaseModel):
    error: str
    detail: str


_ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in {
    400: "malformed request (not multipart/form-data, broken form, empty image)",
    413: "upload or image too large",
    415: "the upload is not an image in an accepted format",
    422: "a field missing, repeated, unknown or unusable; a damaged image",
    503: "the model cannot be loaded",
}.items()}


# ----------------------------------------------------------------------------- multipart, in memory

@dataclass
class _Part:
    name: str = ""
    is_file: bool = False
    data: bytearray = field(default_factory=bytearray)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, in memory, refused (413) past ``limit`` bytes, announced or not."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "bad_request", f"Content-Length {declared!r} is not a number.")
        if int(declared) > limit:
            raise RequestError(413, "upload_too_large", f"The request is {int(declared):,} bytes, more than the "
                                                        f"{limit:,} allowed; send a smaller image.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # a chunked upload, or a Content-Length that lied
            raise RequestError(413, "upload_too_large", f"The request is more than the {limit:,} bytes allowed; "
                                                        "send a smaller image.")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_form(body: bytes, content_type: str | None) -> dict[str, _Part]:
    """Split a multipart/form-data body into its parts, by field name. File names are not kept."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise RequestError(400, "not_multipart", f"Send the image as multipart/form-data (got "
                                                 f"{(content_type or 'no Content-Type')!r}), e.g. "
                                                 "curl -F image=@picture.png URL.")
    if not params.get(b"boundary"):
        raise RequestError(400, "bad_multipart", "The multipart/form-data Content-Type has no boundary.")
    parts: list[_Part] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}
    current = _Part()
    disposition = b""

    def on_part_begin():
        nonlocal current, disposition
        current, disposition = _Part(), b""

    def on_header_field(data, start, end):
        header["field"] += data[start:end]

    def on_header_value(data, start, end):
        header["value"] += data[start:end]

    def on_header_end():
        nonlocal disposition
        if header["field"].strip().lower() == b"content-disposition":
            disposition = header["value"]
        header["field"] = header["value"] = b""

    def on_headers_finished():
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise RequestError(400, "bad_multipart", "A form part has no name (Content-Disposition: form-data; name=...).")
        current.name = options[b"name"].decode("utf-8", "replace")
        current.is_file = b"filename" in options  # the file name itself is never read

    def on_part_data(data, start, end):
        current.data += data[start:end]

    def on_part_end():
        parts.append(current)
        if len(parts) > _MAX_PARTS:
            raise RequestError(400, "bad_multipart", f"The form has more than {_MAX_PARTS} parts.")

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    })
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as err:
        raise RequestError(400, "bad_multipart", f"The multipart/form-data body is malformed ({err}).") from None
    form: dict[str, _Part] = {}
    for part in parts:
        if part.name in form:
            raise RequestError(422, "repeated_field", f"The form has the field {part.name!r} twice; send it once.")
        form[part.name] = part
    return form


def _check_fields(form: dict[str, _Part], required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    allowed = required + optional
    unknown = [name for name in form if name not in allowed]
    missing = [name for name in required if name not in form]
    if missing or unknown:
        problems = ([f"no {' or '.join(map(repr, missing))} field"] if missing else []) + \
                   ([f"the unknown field(s) {', '.join(map(repr, unknown))}"] if unknown else [])
        takes = ", ".join(required) + (f" (optional: {', '.join(optional)})" if optional else "")
        raise RequestError(422, "bad_fields", f"The form has {' and '.join(problems)}; this endpoint takes {takes}, "
                                              "e.g. curl -F image=@picture.png -F question=... URL.")


def _text_field(form: dict[str, _Part], name: str) -> str | None:
    part = form.get(name)
    if part is None:
        return None
    try:
        text = part.data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise RequestError(422, "bad_field", f"The field {name!r} is not UTF-8 text.") from None
    if not text:
        raise RequestError(422, "bad_field", f"The field {name!r} is empty.")
    if len(text) > MAX_TEXT_CHARS:
        raise RequestError(422, "bad_field", f"The field {name!r} has {len(text)} characters, more than "
                                             f"{MAX_TEXT_CHARS}.")
    return text


def _generation(form: dict[str, _Part]) -> dict:
    text = _text_field(form, "max_new_tokens")
    if text is None:
        return {}
    if not text.isdigit() or not 1 <= int(text) <= MAX_NEW_TOKENS:
        raise RequestError(422, "bad_field", f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS} "
                                             f"(got {text!r}).")
    return {"max_new_tokens": int(text)}


# ----------------------------------------------------------------------------- the app

def _form_schema(fields: dict[str, dict], required: list[str]) -> dict:
    """OpenAPI description of a multipart body (the form is parsed by hand, so FastAPI cannot infer it)."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "properties": fields, "required": required}}}}}


_IMAGE_FIELD = {"type": "string", "format": "binary",
                "description": f"the picture ({', '.join(UPLOAD_FORMATS)}; recognised by content)"}
_TOKENS_FIELD = {"type": "integer", "minimum": 1, "maximum": MAX_NEW_TOKENS, "description": "longest answer, in tokens"}


def create_app(inference: Inference | None = None, *, model=None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_pixels: int = MAX_UPLOAD_PIXELS) -> FastAPI:
    """The FastAPI app. inference: an :class:`Inference` to serve (default: ``Inference(model)``,
    i.e. the per-task defaults when ``model`` is ``None``); its /describe and /vqa models are
    loaded here, once. max_upload_bytes / max_pixels: the largest image file and picture accepted."""
    from .settings import get_device, get_mode

    check_positive_int(max_upload_bytes, "max_upload_bytes")
    inference = (inference or Inference(model=model)).load("describe", "ask")
    serving = {"describe": inference.model_name("describe"), "vqa": inference.model_name("ask")}
    app = FastAPI(title="vlmstudy", version=__version__,
                  description="Describe images and answer questions about them with the course's models. Send "
                              "images as multipart/form-data field `image`; errors are JSON {error, detail}.")
    app.state.inference = inference

    async def read_form(request: Request, required: tuple[str, ...], optional: tuple[str, ...]):
        body = await _read_body(request, max_upload_bytes + _FORM_OVERHEAD)
        form = _parse_form(body, request.headers.get("content-type"))
        _check_fields(form, required, optional)
        image = form["image"]
        if not image.data:
            raise RequestError(400, "empty_image", "The image field is empty (0 bytes); attach a file: "
                                                   "-F image=@picture.png.")
        # decoding is CPU work: off the event loop, and in parallel for concurrent requests
        picture = await run_in_threadpool(load_image_bytes, bytes(image.data), max_pixels=max_pixels,
                                          max_bytes=max_upload_bytes, formats=UPLOAD_FORMATS)
        return form, picture

    @app.post("/describe", response_model=DescribeResponse, responses=_ERRORS, summary="Describe an image",
              openapi_extra=_form_schema({"image": _IMAGE_FIELD, "prompt": {
                  "type": "string", "maxLength": MAX_TEXT_CHARS,
                  "description": "optional: the caption's start (BLIP) or an instruction (LLaVA)"},
                  "max_new_tokens": _TOKENS_FIELD}, ["image"]))
    async def describe(request: Request):
        form, picture = await read_form(request, ("image",), ("prompt", "max_new_tokens"))
        text = await run_in_threadpool(inference.describe, picture, prompt=_text_field(form, "prompt"),
                                       **_generation(form))
        return DescribeResponse(model=serving["describe"], description=text)

    @app.post("/vqa", response_model=VqaResponse, responses=_ERRORS, summary="Answer a question about an image",
              openapi_extra=_form_schema({"image": _IMAGE_FIELD, "question": {
                  "type": "string", "maxLength": MAX_TEXT_CHARS}, "max_new_tokens": _TOKENS_FIELD},
                  ["image", "question"]))
    async def vqa(request: Request):
        form, picture = await read_form(request, ("image", "question"), ("max_new_tokens",))
        question = _text_field(form, "question")
        answer = await run_in_threadpool(inference.ask, picture, question, **_generation(form))
        return VqaResponse(model=serving["vqa"], question=question, answer=answer)

    @app.get("/health", response_model=HealthResponse, summary="Is the server up, and with which models")
    def health():
        return HealthResponse(status="ok", version=__version__, mode=get_mode(), device=get_device(), models=serving)

    @app.get("/models", response_model=ModelsResponse, summary="The model zoo, and which models this server uses")
    def models():
        from .zoo import CARDS

        infos = [ModelInfo(name=card.name, hub_id=card.hub_id, family=card.family, tasks=list(card.tasks),
                           available=card.is_present() if get_mode() == "tiny" else True,
                           serves=[route for route, name in serving.items() if name in (card.name, card.hub_id.lower())])
                 for card in CARDS]
        return ModelsResponse(mode=get_mode(), serving=serving, models=infos)

    _add_error_handlers(app)
    app.add_middleware(_ClientErrorLog)
    return app


def _error(status: int, code: str, detail) -> JSONResponse:
    return JSONResponse({"error": code, "detail": " ".join(str(detail).split())}, status_code=status)


def _where(request_or_scope) -> str:
    scope = request_or_scope if isinstance(request_or_scope, dict) else request_or_scope.scope
    return f"{scope.get('method', '?')} {scope.get('path', '?')}"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VlmStudyError)
    async def known_error(request: Request, err: VlmStudyError):
        status, code = _status_and_code(err)
        log.info("%s: %s %s (%s)", _where(request), status, code, " ".join(str(err).split())[:200])
        return _error(status, code, err)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        log.info("%s: %s", _where(request), err.status_code)
        return _error(err.status_code, f"http_{err.status_code}", err.detail)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in err.errors())
        log.info("%s: 422 bad_request (%s)", _where(request), problems[:200])
        return _error(422, "bad_request", problems)


def _status_and_code(err: VlmStudyError) -> tuple[int, str]:
    if isinstance(err, RequestError):
        return err.status, err.code
    for kind, status, code in ((ImageTooLargeError, 413, "image_too_large"), (NotAnImageError, 415, "not_an_image"),
                               (ImageError, 422, "bad_image"), (ModelUnavailableError, 503, "model_unavailable"),
                               (ContextLengthError, 422, "prompt_too_long"), (ConfigError, 422, "bad_request")):
        if isinstance(err, kind):
            return status, code
    return 422, "bad_request"


class _ClientErrorLog:
    """ASGI middleware, inside Starlette's ServerErrorMiddleware (which would log a traceback and
    re-raise everything): a client that disconnects mid-request is one INFO line; any other escaped
    exception is a server bug, logged once with its traceback and answered with a JSON 500."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import ClientDisconnect

        started = False

        async def send_tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except ClientDisconnect:
            log.info("%s: the client disconnected before its request was read; nothing was answered", _where(scope))
        except Exception:  # noqa: BLE001  (the last line of defence: the client gets JSON, the log the traceback)
            log.exception("unexpected error in %s", _where(scope))
            if not started:
                response = _error(500, "internal_error", "The server failed on this request; its log has the details.")
                await response(scope, receive, send)
