"""The explorer's HTTP server: JSON endpoints over :class:`~aekit.web.explorer.RunExplorer`, and the page.

``create_app(run_dirs)`` serves the page in ``static/`` and these endpoints (``?run=ID`` picks a
run by its id or name from ``GET /api/runs``; never a path, so a request can only reach the
folders the server was started with)::

    GET  /api/runs                    the runs this server knows, its device and (on CUDA) its peak GPU memory
    GET  /api/runs/table              the same runs as `aekit runs` rows: epochs, test metrics, status
    GET  /api/run                     config, flags, per-epoch and test metrics
    GET  /api/points                  the map: projected test codes, labels, projection, sliders
    POST /api/decode                  {"z": [...]}, {"point": [x, y]} or {"coords": [...]} (sliders),
                                      optional "label"
    POST /api/reconstruct             multipart upload in field "file" (optional form field "label")
    POST /api/interpolate             {"a": T, "b": T, "steps": N}; T = {"z"|"point"|"coords"|"index": ...}
    GET  /api/sample?n=N&label=K      draws from the prior (generative models only)
    GET  /api/image/{index}           a test image (for hovering over the map)
    GET  /report/{run}/               the run's report.html, if it has one

Images travel as PNG data URIs inside JSON.  Every answer is JSON, errors included:
``{"error": "one line", "detail": ...}``, where ``detail`` is the same line, or for a request
whose values fail validation the list of ``{"loc", "msg", "type"}`` per field.  The status codes::

    400  the request itself is unreadable: a bad Content-Length, a multipart body that cannot be
         parsed, or (when bound to loopback) a Host header other than this server's loopback names
    404  no such run, test image, report file or endpoint (405: a known path, another method)
    409  the model cannot do that (sampling a model with no prior, a label for an unconditional
         model), or the run is broken: its folder cannot be read ("this run is broken: <file>: why")
    413  a body, an upload or an image's pixel count over its limit
    415  an upload that is not an image
    422  malformed or out-of-range values: invalid JSON (or JSON nested too deeply), a wrong type,
         a number out of range, a missing or misspelt field, no label for a conditional model
    500  a bug in aekit: {"error": "internal error: <ExceptionType>"}; the traceback is logged

A request never gets a 500 for anything it sent, and no answer is a traceback or plain text.
A broken run is a 409 rather than a 500 because the server is fine and the run folder is what
needs fixing: a folder of runs is served with its broken runs listed (``"broken": "why"`` in
``GET /api/runs``, null for a good run) beside the good ones; only when no run can be served
does :func:`create_app` raise (``aekit serve`` prints one line and exits 1).  Each run's model
is loaded once when the server starts, to check it, and then again, to keep, on first use.

Loopback binds (``127.x.y.z``, ``::1``, ``localhost``; see :func:`loopback_hosts`) accept only
Host headers naming loopback (``localhost``, ``127.0.0.1``, ``[::1]`` and the bound address,
with or without a port), so a web page elsewhere cannot reach the server by DNS rebinding;
any other bind accepts every Host header (``aekit serve`` warns that the page is then exposed).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import torch
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AekitError, CheckpointError
from ..run import REPORT_NAME
from ..run.weights import resolve_device
from .explorer import (
    MAX_LATENT_DIM,
    MAX_POINTS,
    MAX_SAMPLES,
    MAX_STEPS,
    MAX_UPLOAD_BYTES,
    Z_LIMIT,
    BrokenRun,
    BrokenRunError,
    RequestError,
    RunExplorer,
    TooLargeError,
    _finite_json,
    one_line,
)
from .music import explorer_for  # a melody run's explorer: the same API, melodies and their notes

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_JSON_BYTES = 2 * 1024 * 1024  # room for a 65,536-number latent; the page's own bodies are far smaller
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the uploaded file
# The page is self-contained: scripts, styles and fetches only from this server, images also as
# data URIs (the decoded images) and blobs (the drawing pad).
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
# A run whose quickest decode so far took less than this decodes on the event loop (see create_app).
INLINE_DECODE_MS = 5.0
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


# -- answers --------------------------------------------------------------------------------

class _JSON(JSONResponse):
    """JSON that never fails on NaN or infinity (a diverged run's numbers): those become null."""

    def render(self, content) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # out-of-range float values are not JSON compliant
            return super().render(_finite_json(content))


def _error(status: int, message: str, detail=None, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer: ``{"error": "one line", "detail": ...}`` (``detail`` defaults to the line)."""
    return _JSON({"error": message, "detail": message if detail is None else detail}, status, headers=headers)


# -- the Host check ---------------------------------------------------------------------------

def _normal_host(name: str) -> str:
    """A host name or address as compared: lower case, IP addresses in their canonical form."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def _is_loopback(name: str) -> bool:
    name = _normal_host(name)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def loopback_hosts(bind_host: str, bound_address: str | None = None) -> list[str] | None:
    """The Host header names a server bound to ``bind_host`` accepts, or None to accept any.

    A loopback bind (any 127.x.y.z, ::1, ``localhost``, or a name whose ``bound_address``, the
    address the socket got, is loopback) accepts ``localhost``, ``127.0.0.1``, ``::1``, the bound
    address and the name it was given; any other bind (0.0.0.0, a LAN address) accepts any
    Host, as a server meant to be reached from elsewhere must.
    """
    if not (_is_loopback(bind_host) or (bound_address is not None and _is_loopback(bound_address))):
        return None
    names = {"localhost", "127.0.0.1", "::1", _normal_host(bind_host)}
    if bound_address is not None:
        names.add(_normal_host(bound_address))
    return sorted(names)


def _host_name(header: str) -> str | None:
    """The name in a Host header (``name``, ``name:port``, ``[v6]`` or ``[v6]:port``), or None if malformed."""
    if header.startswith("["):
        close = header.find("]")
        name, rest = header[1:close], header[close + 1:]
        if close < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return _normal_host(name)
    name, colon, port = header.partition(":")
    if not name or (colon and not port.isdigit()) or ":" in port:
        return None
    return _normal_host(name)


# -- middleware -----------------------------------------------------------------------------

class _Guard:
    """Around every request: the Host check (400), body caps while they are read (413), security
    headers on every answer, and the last-resort 500 (JSON, traceback logged) for a bug.

    A pure ASGI wrapper rather than ``@app.middleware("http")``: it costs nothing per request
    on the decode path, and it can stop an upload mid-stream instead of after buffering it.
    """

    def __init__(self, app, *, limits: dict[str, int], default_limit: int, allowed_hosts: Sequence[str] | None):
        self.app = app
        self.limits = limits
        self.default_limit = default_limit
        self.allowed_hosts = None if allowed_hosts is None else {_normal_host(h) for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        started = False

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

        headers = dict(scope["headers"])
        if self.allowed_hosts is not None:
            host = headers.get(b"host", b"").decode("latin-1")
            if _host_name(host) not in self.allowed_hosts:
                shown = sorted(f"[{h}]" if ":" in h else h for h in self.allowed_hosts)
                return await _error(400, f"invalid Host header {host[:100]!r}: this server, bound to loopback, "
                                         f"answers only to {', '.join(shown)}")(scope, receive, send_with_headers)
        limit = self.limits.get(path, self.default_limit)
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await _error(400, "bad Content-Length")(scope, receive, send_with_headers)
            if int(length) > limit:  # refuse before reading a byte of it
                return await _too_large(limit)(scope, receive, send_with_headers)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises HTTPException from body reading as is, so this becomes a 413.
                    raise HTTPException(413, f"request body above {limit:,} bytes")
            return message

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except HTTPException as err:  # raised by limited_receive outside FastAPI's own handling
            if started or err.status_code != 413:
                raise
            await _too_large(limit)(scope, receive, send_with_headers)
        except Exception as err:
            # A bug: logged with its traceback here, answered as one JSON line there.
            log.exception("internal error answering %s %s", scope.get("method"), path)
            if started:  # half an answer is out; the server can only drop the connection
                raise
            await _internal_error(err)(scope, receive, send_with_headers)


def _too_large(limit: int) -> JSONResponse:
    return _error(413, f"request body above the limit of {limit:,} bytes")


def _internal_error(err: BaseException) -> JSONResponse:
    return _error(500, f"internal error: {type(err).__name__}")


# -- the app --------------------------------------------------------------------------------

Entry = RunExplorer | BrokenRun


def _build_runs(run_dirs: Sequence[str | Path], device: str, max_points: int) -> dict[str, Entry]:
    """One entry per folder, in order: a RunExplorer (checked, see RunExplorer.check) or a BrokenRun."""
    runs: dict[str, Entry] = {}
    for path in run_dirs:
        path = Path(path)
        run_id, name = str(len(runs)), path.resolve().name or str(path)
        try:
            entry: Entry = explorer_for(path, run_id=run_id, name=name, device=device, max_points=max_points)
        except AekitError as err:
            entry = BrokenRun(path, run_id, name, one_line(err))
        except Exception as err:  # last resort: one unreadable run must not stop the server
            log.exception("%s: unexpected error while reading the run", path)
            entry = BrokenRun(path, run_id, name, f"{path}: cannot be read (internal error: {type(err).__name__})")
        else:
            entry.check()
        runs[run_id] = entry
    broken = [r for r in runs.values() if r.broken]
    if len(broken) == len(runs):
        detail = "; ".join(r.broken for r in broken) if broken else "no run folders given"
        raise CheckpointError(f"no run to serve: {detail}")
    for r in broken:
        log.warning("run %s is broken, listed but not served: %s", r.name, r.broken)
    return runs


def create_app(run_dirs: Sequence[str | Path], *, device: str = "cpu", allowed_hosts: Sequence[str] | None = None,
               max_points: int = MAX_POINTS) -> FastAPI:
    """The explorer for ``run_dirs`` (run folders).  Models load lazily, once per run.

    ``allowed_hosts``: the Host header names to accept, ports aside (``aekit serve`` passes
    :func:`loopback_hosts` of its bind address); None accepts any.  Folders that cannot be
    read are listed as broken and answer 409; none servable raises CheckpointError, and a
    ``device`` this machine lacks (cuda without a GPU) a ConfigError.
    """
    device_name = str(resolve_device(device))  # before any run is read: the one line says what to change
    runs = _build_runs(run_dirs, device, max_points)
    names: dict[str, list[str]] = {}
    for entry in runs.values():
        names.setdefault(entry.name, []).append(entry.id)

    # No /docs: FastAPI's Swagger page loads its scripts from a CDN, and this server works offline.
    app = FastAPI(title="aekit explorer", docs_url=None, redoc_url=None, default_response_class=_JSON)
    app.state.runs = runs

    def get_run(run: str | None) -> RunExplorer:
        if run is None:  # the first run that is not known to be broken
            entry = next((r for r in runs.values() if not r.broken), next(iter(runs.values())))
        elif run in runs:
            entry = runs[run]
        elif len(names.get(run, [])) == 1:
            entry = runs[names[run][0]]
        else:
            known = ", ".join(f"{r.id} ({r.name})" for r in runs.values())
            raise HTTPException(404, f"no run {run[:100]!r} on this server; known runs: {known}")
        if entry.broken:
            raise BrokenRunError(f"this run is broken: {entry.broken}")
        return entry

    # -- errors ------------------------------------------------------------------------------
    @app.exception_handler(RequestError)
    async def _request_error(request: Request, err: RequestError):
        return _error(err.status, one_line(err, 2000))

    @app.exception_handler(CheckpointError)
    async def _broken_run(request: Request, err: CheckpointError):
        # The request was fine; the run folder on disk is not (RunExplorer.load turns most of
        # these into BrokenRunError; this catches any other read of the folder).
        log.error("%s", err)
        return _error(409, f"this run is broken: {one_line(err)}")

    @app.exception_handler(AekitError)
    async def _aekit_error(request: Request, err: AekitError):
        return _error(422, one_line(err, 2000))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        # FastAPI's default echoes the offending input, which may hold NaN (not JSON) or megabytes.
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in err.errors()]
        line = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors) or "invalid request"
        return _error(422, one_line(line, 2000), errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        if err.status_code == 400 and isinstance(err.__cause__, RecursionError):
            # FastAPI answers 400 for a JSON body its parser gives up on; like any other invalid
            # JSON, that is a 422.
            return _error(422, "the JSON body is nested too deeply")
        return _error(err.status_code, one_line(str(err.detail), 2000), headers=getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception):
        # _Guard answers bugs first; this covers anything that escapes it (Starlette then
        # re-raises, so the server logs the traceback).
        return _internal_error(err)

    # -- the page ----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # -- the API -----------------------------------------------------------------------------
    @app.get("/api/runs")
    def list_runs():
        # the most GPU memory the server's models and decodes have held at once, for the benchmarks
        # (None on a CPU server, even where CUDA was initialised in the process for other work)
        peak = torch.cuda.max_memory_allocated() if device_name.startswith("cuda") and torch.cuda.is_initialized() else None
        return {"runs": [dict(r.summary(), has_report=r.has_report) for r in runs.values()],
                "device": device_name, "gpu_memory_peak_bytes": peak}

    @app.get("/api/runs/table")
    def runs_table():
        # The picker's table, read from the folders on each request: a run still training
        # shows its progress.  No paths: a request only ever learns the runs' names.
        from ..app.runs import applicable_metrics, run_row

        rows = [{k: v for k, v in run_row(r.run_dir).items() if k != "path"} | {"id": r.id, "name": r.name}
                for r in runs.values()]
        columns = [{"key": m.key, "label": m.label, "digits": m.digits} for m in applicable_metrics(rows)]
        return {"metrics": columns, "runs": rows}

    @app.get("/api/run")
    def run_info(run: RunParam = None):
        return get_run(run).info()

    @app.get("/api/points")
    def points(run: RunParam = None):
        return get_run(run).points()

    # The page asks for a decode on every mouse move.  Where one takes less than INLINE_DECODE_MS
    # (0.5 ms for a 2-D VAE's answer, 2.5 ms for the zoo's U-Nets) it is answered on the event
    # loop: handing it to a worker thread and back costs more than that under load, when the loop
    # and 8 workers queue for the GIL and the cores (benchmarks/serve_latency.py).  So a run
    # decodes in the thread pool, where a slow decode holds up no other request (a melody, decoded
    # note by note; the first, if it loads the run), until one of its decodes has been quick.
    quickest_ms: dict[str, float] = {}  # run id -> its quickest decode so far, the one least disturbed

    @app.post("/api/decode")
    async def decode(body: DecodeRequest, run: RunParam = None):
        explorer = get_run(run)

        def timed() -> _JSON:
            started = time.perf_counter()
            answer = explorer.decode(z=body.z, point=body.point, coords=body.coords, label=body.label)
            took = (time.perf_counter() - started) * 1000
            quickest_ms[explorer.id] = min(took, quickest_ms.get(explorer.id, math.inf))
            return _JSON(answer)  # as is: FastAPI's jsonable_encoder would walk it once more first

        if quickest_ms.get(explorer.id, math.inf) < INLINE_DECODE_MS:
            return timed()
        return await run_in_threadpool(timed)

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
    app.add_middleware(_Guard, limits=limits, default_limit=MAX_JSON_BYTES, allowed_hosts=allowed_hosts)
    return app
