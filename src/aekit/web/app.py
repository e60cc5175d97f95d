"""The explorer's HTTP server: JSON endpoints over :class:`~aekit.web.explorer.RunExplorer`, and the page.

``create_app(run_dirs)`` serves the page in ``static/`` and these endpoints (``?run=ID`` picks a
run by its id or name from ``GET /api/runs``; never a path, so a request can only reach the
folders the server was started with)::

    GET  /api/runs                    the runs this server knows
    GET  /api/run                     config, flags, per-epoch and test metrics
    GET  /api/points                  the map: projected test codes, labels, projection, sliders
    POST /api/decode                  {"z": [...]}, {"point": [x, y]} or {"coords": [...]} (sliders),
                                      optional "label"
    POST /api/reconstruct             multipart upload in field "file" (optional form field "label")
    POST /api/interpolate             {"a": T, "b": T, "steps": N}; T = {"z"|"point"|"coords"|"index": ...}
    GET  /api/sample?n=N&label=K      draws from the prior (generative models only)
    GET  /api/image/{index}           a test image (for hovering over the map)
    GET  /report/{run}/               the run's report.html, if it has one

Images travel as PNG data URIs inside JSON.  Errors are ``{"detail": "..."}`` with 404 (unknown
run or index), 409 (the model cannot do that), 413 (too large), 415 (not an image) or 422
(malformed or out-of-range values), never a 500 for a bad request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from ..errors import AekitError, CheckpointError
from ..run import REPORT_NAME
from .explorer import (
    MAX_LATENT_DIM,
    MAX_POINTS,
    MAX_SAMPLES,
    MAX_STEPS,
    MAX_UPLOAD_BYTES,
    Z_LIMIT,
    RequestError,
    RunExplorer,
    TooLargeError,
)

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_JSON_BYTES = 2 * 1024 * 1024  # room for a 65,536-number latent; the page's own bodies are far smaller
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the uploaded file
# The page is self-contained: scripts, styles and fetches only from this server, images also as
# data URIs (the decoded images) and blobs (the drawing pad).
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
REPORT_FILES = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(png|svg|jpg|jpeg|gif|webp|css)$")


# -- request bodies -------------------------------------------------------------------------

RunParam = Annotated[str | None, Query(max_length=300, description="run id or name from /api/runs")]
Coord = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-Z_LIMIT, le=Z_LIMIT)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not silently ignored


class _Latent(_Body):
    """A latent given as exactly one of: the full latent, a point on the map, slider coordinates."""

    z: list[Coord] | None = Field(None, min_length=1, max_length=MAX_LATENT_DIM)
    point: list[Coord] | None = Field(None, min_length=2, max_length=2)
    coords: list[Coord] | None = Field(None, min_length=1, max_length=MAX_LATENT_DIM)


class Target(_Latent):
    """One end of an interpolation: a latent, or a test image's index."""

    index: StrictInt | None = None


class DecodeRequest(_Latent):
    label: StrictInt | None = None


class InterpolateRequest(_Body):
    a: Target
    b: Target
    steps: StrictInt = Field(8, ge=2, le=MAX_STEPS)
    label: StrictInt | None = None
    spherical: StrictBool = False  # slerp: keeps Gaussian codes at a typical norm


# -- middleware -----------------------------------------------------------------------------

class _Guard:
    """Caps request bodies while they are read (413) and adds security headers to responses.

    A pure ASGI wrapper rather than ``@app.middleware("http")``: it costs nothing per request
    on the decode path, and it can stop an upload mid-stream instead of after buffering it.
    """

    def __init__(self, app, *, limits: dict[str, int], default_limit: int):
        self.app = app
        self.limits = limits
        self.default_limit = default_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        limit = self.limits.get(path, self.default_limit)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await JSONResponse({"detail": "bad Content-Length"}, 400)(scope, receive, send)
            if int(length) > limit:  # refuse before reading a byte of it
                return await _too_large(limit)(scope, receive, send)
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises HTTPException from body reading as is, so this becomes a 413.
                    raise HTTPException(413, f"request body above {limit:,} bytes")
            return message

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if path.startswith("/api/"):
                    extra.append((b"cache-control", b"no-store"))
                if not path.startswith("/report"):  # the report is the run's own HTML, served as written
                    extra.append((b"content-security-policy", PAGE_CSP.encode()))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except HTTPException as err:  # raised by limited_receive outside FastAPI's own handling
            if started or err.status_code != 413:
                raise
            await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body above the limit of {limit:,} bytes"}, 413)


# -- the app --------------------------------------------------------------------------------

def _build_runs(run_dirs: Sequence[str | Path], device: str, max_points: int) -> dict[str, RunExplorer]:
    runs: dict[str, RunExplorer] = {}
    problems = []
    for path in run_dirs:
        path = Path(path)
        try:
            run = RunExplorer(path, run_id=str(len(runs)), name=path.resolve().name or str(path),
                              device=device, max_points=max_points)
        except AekitError as err:
            problems.append(str(err))
            log.warning("skipping %s: %s", path, err)
            continue
        runs[run.id] = run
    if not runs:
        detail = "; ".join(problems) if problems else "no run folders given"
        raise CheckpointError(f"no run to serve: {detail}")
    return runs


def create_app(run_dirs: Sequence[str | Path], *, device: str = "cpu", allowed_hosts: Sequence[str] | None = None,
               max_points: int = MAX_POINTS) -> FastAPI:
    """The explorer for ``run_dirs`` (run folders).  Models load lazily, once per run.

    ``allowed_hosts``: Host header values to accept (the CLI passes the loopback names when it
    binds to loopback, so a web page elsewhere cannot reach the server by DNS rebinding).
    Folders that cannot be read are skipped with a warning; none readable raises CheckpointError.
    """
    runs = _build_runs(run_dirs, device, max_points)
    names: dict[str, list[str]] = {}
    for run in runs.values():
        names.setdefault(run.name, []).append(run.id)

    # No /docs: FastAPI's Swagger page loads its scripts from a CDN, and this server works offline.
    app = FastAPI(title="aekit explorer", docs_url=None, redoc_url=None)
    app.state.runs = runs

    def get_run(run: str | None) -> RunExplorer:
        if run is None:
            return next(iter(runs.values()))
        if run in runs:
            return runs[run]
        ids = names.get(run, [])
        if len(ids) == 1:
            return runs[ids[0]]
        known = ", ".join(f"{r.id} ({r.name})" for r in runs.values())
        raise HTTPException(404, f"no run {run!r} on this server; known runs: {known}")

    # -- errors ------------------------------------------------------------------------------
    @app.exception_handler(RequestError)
    async def _request_error(request: Request, err: RequestError):
        return JSONResponse({"detail": str(err)}, err.status)

    @app.exception_handler(CheckpointError)
    async def _broken_run(request: Request, err: CheckpointError):
        # The request was fine; the run folder on disk is not.
        log.error("%s", err)
        return JSONResponse({"detail": f"this run cannot be loaded: {err}"}, 500)

    @app.exception_handler(AekitError)
    async def _aekit_error(request: Request, err: AekitError):
        return JSONResponse({"detail": str(err)}, 422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        # FastAPI's default echoes the offending input, which may hold NaN (not JSON) or megabytes.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in err.errors()]
        return JSONResponse({"detail": errors}, 422)

    # -- the page ----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # -- the API -----------------------------------------------------------------------------
    @app.get("/api/runs")
    def list_runs():
        return {"runs": [dict(r.summary(), has_report=r.has_report) for r in runs.values()]}

    @app.get("/api/run")
    def run_info(run: RunParam = None):
        return get_run(run).info()

    @app.get("/api/points")
    def points(run: RunParam = None):
        return get_run(run).points()

    @app.post("/api/decode")
    def decode(body: DecodeRequest, run: RunParam = None):
        return get_run(run).decode(z=body.z, point=body.point, coords=body.coords, label=body.label)

    @app.post("/api/reconstruct")
    def reconstruct(file: Annotated[UploadFile, File()], label: Annotated[int | None, Form()] = None,
                    run: RunParam = None):
        explorer = get_run(run)
        data = file.file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise TooLargeError(f"upload above {MAX_UPLOAD_BYTES:,} bytes; send a smaller image")
        return explorer.reconstruct(data, label=label)

    @app.post("/api/interpolate")
    def interpolate(body: InterpolateRequest, run: RunParam = None):
        explorer = get_run(run)
        a, b = (t.model_dump(exclude_none=True) for t in (body.a, body.b))
        return explorer.interpolate(a, b, steps=body.steps, label=body.label, spherical=body.spherical)

    @app.get("/api/sample")
    def sample(n: Annotated[int, Query(ge=1, le=MAX_SAMPLES)] = 1, label: int | None = None,
               seed: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None, run: RunParam = None):
        return get_run(run).sample(n, label=label, seed=seed)

    @app.get("/api/image/{index}")
    def test_image(index: int, run: RunParam = None):
        return get_run(run).test_image(index)

    # -- the run's report ----------------------------------------------------------------------
    @app.get("/report", include_in_schema=False)
    def report_redirect(run: RunParam = None):
        return RedirectResponse(f"/report/{get_run(run).id}/", 307)

    @app.get("/report/{run_id}/", include_in_schema=False)
    def report(run_id: str):
        explorer = get_run(run_id)
        if not explorer.has_report:
            raise HTTPException(404, f"run {explorer.name} has no {REPORT_NAME}; it is written at the end of training")
        return FileResponse(explorer.run_dir / REPORT_NAME, media_type="text/html")

    @app.get("/report/{run_id}/{name}", include_in_schema=False)
    def report_file(run_id: str, name: str):
        # Figures the report links to, beside it in the run folder: plain names only, so a
        # request can never climb out of the folder (no '/', no leading dot).
        explorer = get_run(run_id)
        path = explorer.run_dir / name
        if not REPORT_FILES.match(name) or not path.is_file() or path.resolve().parent != explorer.run_dir.resolve():
            raise HTTPException(404, f"no file {name!r} beside this run's report")
        return FileResponse(path)

    limits = {"/api/reconstruct": MAX_UPLOAD_BYTES + MULTIPART_SLACK}
    app.add_middleware(_Guard, limits=limits, default_limit=MAX_JSON_BYTES)
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    return app
