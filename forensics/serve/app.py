"""The HTTP layer of ``forensics serve``: a Starlette app in front of a :class:`~forensics.serve.pool.ScanPool`.

Why Starlette on uvicorn: both are small, maintained, ASGI-standard and already how Python services are run in
production; Starlette gives routing, multipart parsing (``python-multipart``) and streaming responses without
FastAPI's pydantic layer, which this API (two upload endpoints answering scan records) would not use.

The request path, for ``POST /v1/scan``:

1. :class:`ServiceMiddleware` gives the request an id (the client's ``X-Request-ID`` when safe), checks the API
   key, and afterwards counts, times and logs it as one JSON line;
2. the body is read through a byte counter (413 past ``--max-upload-bytes``, before the whole body arrives) and
   spooled to a private temporary folder;
3. the job is admitted to the pool's bounded queue (429 + ``Retry-After`` when full) with its deadline;
4. a scanner process answers it with the same record as ``forensics scan --jsonl`` (``200``), a per-file error
   record (``422``, one-line ``error``), or the pool answers ``timeout`` (``504``).

Status codes and error bodies are listed in ``docs/serve.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from forensics.serve.logs import new_request_id, request_id_var
from forensics.serve.metrics import CONTENT_TYPE_LATEST, ServeMetrics
from forensics.serve.pool import (
    BAD_FILE,
    OK,
    SHUTTING_DOWN,
    TIMEOUT,
    Job,
    Outcome,
    PoolClosedError,
    QueueFullError,
    ScanPool,
    WorkerOptions,
    error_record,
)
from forensics.serve.settings import ServeSettings
from forensics_core.outputs import safe_text

log = logging.getLogger("forensics.serve")

OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # probes answer without an API key
ENDPOINTS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/model", "/v1/scan", "/v1/scan/batch"})
STATUS_BY_CAUSE = {OK: 200, BAD_FILE: 422, TIMEOUT: 504, SHUTTING_DOWN: 503}  # worker_crash and the rest: 500
GRACE_S = 10.0  # the pool answers at a job's deadline; the handler gives up this much later (a kill takes time)
MAX_PATH_CHARS = 4096
JSONL = "application/x-ndjson"
Handler = Callable[[Request, list[str]], Awaitable[Response]]  # (request, spool files to remove afterwards)


class RequestError(Exception):
    """An answer other than a scan record: status, metrics cause and a one-line message."""

    def __init__(self, status: int, cause: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.cause, self.headers = status, cause, headers or {}


class BodyTooLargeError(Exception):
    """The request body went past ``--max-upload-bytes`` while it was being read."""


def error_response(status: int, cause: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": " ".join(message.split()), "cause": cause, "request_id": request_id_var.get()}
    return JSONResponse(body, status_code=status, headers=headers)


def dumps(record: dict[str, Any]) -> str:
    """One record exactly as ``forensics scan --jsonl`` writes it."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


def safe_name(name: str | None) -> str:
    """What an upload is called in its record: the client's base name, printable and short; never a path."""
    base = os.path.basename(str(name or "").replace("\\", "/")).strip()
    return safe_text(base, limit=200) if base not in ("", ".", "..") else "upload"


# ---------------------------------------------------------------------------------------------------------------
# middleware: request id, API key, metrics, access log
# ---------------------------------------------------------------------------------------------------------------
class ServiceMiddleware:
    """Pure ASGI middleware (no response buffering, so streamed batches stay streamed)."""

    def __init__(self, app: Any, metrics: ServeMetrics, api_keys: tuple[str, ...] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.api_keys = tuple(k.encode("utf-8") for k in api_keys)

    def _authorized(self, headers: Headers) -> bool:
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key", "")
        given = key.encode("utf-8")
        ok = False
        for k in self.api_keys:  # compare with every key, in constant time per key
            ok |= hmac.compare_digest(given, k)
        return ok

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rid = new_request_id(headers.get("x-request-id"))
        token = request_id_var.set(rid)
        state = scope.setdefault("state", {})
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status = [500]
        t0 = time.perf_counter()

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode("ascii"))]
            await send(message)

        try:
            if self.api_keys and path not in OPEN_PATHS and not self._authorized(headers):
                state["cause"] = "unauthorized"
                resp = error_response(401, "unauthorized", "missing or wrong API key (Authorization: Bearer KEY)",
                                      {"WWW-Authenticate": "Bearer"})  # fmt: skip
                await resp(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            dt = time.perf_counter() - t0
            code = status[0]
            cause = state.get("cause") or (_default_cause(code) if code >= 400 else None)
            if path in OPEN_PATHS:
                cause = None  # "not ready yet" is an answer, not an error
            self.metrics.requests.labels(endpoint, str(code)).inc()
            self.metrics.latency.labels(endpoint).observe(dt)
            if cause:
                self.metrics.errors.labels(cause).inc()
            if endpoint not in ("/healthz", "/readyz", "/metrics") or code >= 400:  # probes would drown the log
                client = scope.get("client") or ("", 0)
                log.info("%s %s %d", scope.get("method"), path, code, extra={
                    "method": scope.get("method"), "path": path, "status": code, "duration_ms": round(dt * 1000, 2),
                    "cause": cause, "client": client[0], "files": state.get("files"),
                })  # fmt: skip
            request_id_var.reset(token)


def _default_cause(code: int) -> str:
    return {400: "bad_request", 401: "unauthorized", 403: "forbidden_path", 404: "not_found", 405: "bad_request",
            413: "too_large", 422: "bad_file", 429: "queue_full", 503: "unavailable", 504: "timeout"}.get(
        code, "internal")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# the service
# ---------------------------------------------------------------------------------------------------------------
class ScanService:
    """Routes, spool folder and pool of one running service (``create_app`` builds it)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.metrics = ServeMetrics()
        self.pool = ScanPool(
            WorkerOptions(model=settings.model, scan=settings.scan_config, max_file_bytes=settings.max_upload_bytes,
                          log_level=settings.log_level, json_logs=settings.json_logs),
            workers=settings.workers, capacity=settings.queue, batch=settings.batch,
            on_answer=lambda job, out: self.metrics.file_answered(out.cause, out.record),
            on_restart=lambda _slot: self.metrics.restarts.inc(),
        )  # fmt: skip
        self.metrics.pool = self.pool
        self.spool = ""

    # -- lifecycle ---------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.spool = tempfile.mkdtemp(prefix="forensics-serve-")  # mode 0700: uploads are private to the service
        self.pool.start()
        log.info("service started", extra={"workers": self.settings.workers, "queue": self.settings.queue,
                                           "root": self.settings.root, "spool": self.spool})  # fmt: skip
        try:
            yield
        finally:
            await run_in_threadpool(self.pool.close)
            shutil.rmtree(self.spool, ignore_errors=True)
            log.info("service stopped")

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics_text, methods=["GET"]),
            Route("/v1/model", self.model, methods=["GET"]),
            Route("/v1/scan", self.scan_one, methods=["POST"]),
            Route("/v1/scan/batch", self.scan_batch, methods=["POST"]),
        ]

    # -- probes and info ---------------------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        ready = self.pool.ready_workers > 0
        body = {"ready": ready, "workers": self.pool.worker_states(), "queue_depth": self.pool.waiting,
                "in_flight": self.pool.in_flight}  # fmt: skip
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def model(self, request: Request) -> Response:
        if self.pool.model_card is None:
            return error_response(503, "unavailable", "the model is still loading", {"Retry-After": "5"})
        return JSONResponse({"model": self.pool.model_card, "limits": self.settings.limits()})

    # -- scanning ----------------------------------------------------------------------------------------------
    async def scan_one(self, request: Request) -> Response:
        """One file as ``multipart/form-data`` (any single file field) or as the raw body (``?filename=`` names it)."""
        return await self._guarded(request, self._scan_one)

    async def scan_batch(self, request: Request) -> Response:
        """Several uploads (multipart) or ``{"paths": [...]}`` under ``--root``; answers JSON lines in input order."""
        return await self._guarded(request, self._scan_batch)

    async def _guarded(self, request: Request, handler: Handler) -> Response:
        spooled: list[str] = []
        streaming = False
        try:
            if self.pool.ready_workers == 0 and self.pool.model_card is None:
                raise RequestError(503, "unavailable", "the model is still loading", {"Retry-After": "5"})
            resp = await handler(request, spooled)
            streaming = isinstance(resp, StreamingResponse)  # its generator removes the spool files when done
            return resp
        except RequestError as exc:
            request.state.cause = exc.cause
            return error_response(exc.status, exc.cause, str(exc), exc.headers)
        except BodyTooLargeError:
            request.state.cause = "too_large"
            return error_response(413, "too_large", f"request body over {self.settings.max_upload_bytes} bytes",
                                  {"Connection": "close"})  # fmt: skip
        except (MultiPartException, HTTPException) as exc:  # Starlette's form parser raises either
            request.state.cause = "bad_request"
            detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
            return error_response(400, "bad_request", f"multipart body refused: {detail}")
        except ClientDisconnect:
            request.state.cause = "client_disconnect"
            return Response(status_code=499)
        finally:
            if not streaming:
                await run_in_threadpool(_remove, spooled)

    def _deadline(self, request: Request) -> float:
        """Now + ``--timeout``, or sooner when the client asks for less with ``X-Timeout: SECONDS``."""
        budget = self.settings.timeout_s
        asked = request.headers.get("x-timeout")
        if asked:
            try:
                budget = min(budget, max(0.0, float(asked)))
            except ValueError:
                raise RequestError(400, "bad_request", f"X-Timeout {asked!r}: not a number of seconds") from None
        return time.monotonic() + budget

    def _job(self, request: Request, path: str, name: str, deadline: float, sha256: str = "") -> Job:
        return Job(path=path, name=name, deadline=deadline, request_id=request_id_var.get(), sha256=sha256,
                   future=asyncio.get_running_loop().create_future(), loop=asyncio.get_running_loop())  # fmt: skip

    def _admit(self, jobs: list[Job]) -> None:
        try:
            self.pool.submit(jobs)
        except QueueFullError as exc:
            raise RequestError(429, "queue_full", str(exc), {"Retry-After": str(exc.retry_after)}) from None
        except PoolClosedError as exc:
            raise RequestError(503, "unavailable", str(exc)) from None

    async def _scan_one(self, request: Request, spooled: list[str]) -> Response:
        self._check_length(request)
        deadline = self._deadline(request)
        body = _limited(request, self.settings.max_upload_bytes)
        if _is_multipart(request):
            async with body.form(max_files=1, max_fields=10) as form:
                uploads = [v for v in form.values() if isinstance(v, UploadFile)]
                if len(uploads) != 1:
                    raise RequestError(400, "bad_request", "send exactly one file field in the multipart body")
                path = await self._spool_upload(uploads[0], spooled)
                name = safe_name(uploads[0].filename)
        else:
            path = await self._spool_stream(body, spooled)
            name = safe_name(request.query_params.get("filename"))
        if os.path.getsize(path) == 0:
            raise RequestError(400, "bad_request", "empty upload")
        job = self._job(request, path, name, deadline)
        self._admit([job])
        request.state.files = 1
        out = await self._wait(job)
        request.state.cause = None if out.cause == OK else out.cause
        return Response(dumps(out.record), status_code=STATUS_BY_CAUSE.get(out.cause, 500),
                        media_type="application/json")  # fmt: skip

    async def _scan_batch(self, request: Request, spooled: list[str]) -> Response:
        self._check_length(request)
        deadline = self._deadline(request)
        body = _limited(request, self.settings.max_upload_bytes)
        limit = self.settings.max_batch_files
        entries: list[Job | Outcome] = []
        if _is_multipart(request):
            async with body.form(max_files=limit, max_fields=limit) as form:
                uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
                if not uploads:
                    raise RequestError(400, "bad_request", "no file fields in the multipart body")
                for up in uploads:
                    path = await self._spool_upload(up, spooled)
                    entries.append(self._job(request, path, safe_name(up.filename), deadline))
        elif request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
            paths = _paths_from_json(await body.body())
            entries = await run_in_threadpool(self._server_entries, paths, limit)
            entries = [self._job(request, e[0], e[1], deadline, e[2]) if isinstance(e, tuple) else e for e in entries]
        else:
            raise RequestError(415, "bad_request", "send multipart/form-data files or application/json {\"paths\": []}")
        if len(entries) > limit:
            raise RequestError(413, "too_many_files", f"{len(entries)} files; at most {limit} per batch")
        self._admit([e for e in entries if isinstance(e, Job)])
        request.state.files = len(entries)
        return StreamingResponse(self._stream(entries, spooled), media_type=JSONL)

    async def _stream(self, entries: list[Job | Outcome], spooled: list[str]) -> AsyncIterator[str]:
        try:
            for e in entries:
                out = await self._wait(e) if isinstance(e, Job) else e
                yield dumps(out.record) + "\n"
        finally:
            await run_in_threadpool(_remove, spooled)

    async def _wait(self, job: Job) -> Outcome:
        assert job.future is not None
        budget = max(0.0, job.deadline - time.monotonic()) + GRACE_S
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout=budget)
        except asyncio.TimeoutError:  # the pool should have answered at the deadline; never wait forever
            job.error(TIMEOUT, "ScanTimeoutError", "timed out")
            return await job.future

    # -- bodies and paths --------------------------------------------------------------------------------------
    def _check_length(self, request: Request) -> None:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                raise RequestError(400, "bad_request", f"Content-Length {length!r}: not a number") from None
            if n > self.settings.max_upload_bytes:
                raise BodyTooLargeError()

    async def _spool_upload(self, upload: UploadFile, spooled: list[str]) -> str:
        path = self._spool_path(spooled)

        def copy() -> None:
            upload.file.seek(0)
            with open(path, "wb") as fh:
                shutil.copyfileobj(upload.file, fh, 1 << 20)

        await run_in_threadpool(copy)
        return path

    async def _spool_stream(self, request: Request, spooled: list[str]) -> str:
        path = self._spool_path(spooled)
        with open(path, "wb") as fh:  # chunks of <= 64 KiB into the page cache: cheaper than a thread hop each
            async for chunk in request.stream():
                fh.write(chunk)
        return path

    def _spool_path(self, spooled: list[str]) -> str:
        fd, path = tempfile.mkstemp(dir=self.spool, prefix=f"{request_id_var.get()[:32]}-")
        os.close(fd)
        spooled.append(path)
        return path

    def _server_entries(self, paths: list[str], limit: int) -> list[tuple[str, str, str] | Outcome]:
        """``(real path, record name, sha256)`` per file under ``--root`` (folders expanded like ``scan``)."""
        from forensics_core.inputs import InputExpander

        root = self.settings.root
        if root is None:
            raise RequestError(403, "forbidden_path", "server-side paths are off (start the service with --root DIR)")
        out: list[tuple[str, str, str] | Outcome] = []
        for p in paths:
            cand = p if os.path.isabs(p) else os.path.join(root, p)
            real = os.path.realpath(cand)
            if not _within(real, root):
                raise RequestError(403, "forbidden_path", f"{safe_text(p, 200)}: outside the allowed root")
            if not os.path.isdir(real):
                out.append((real, os.path.abspath(cand), ""))
                continue
            for item in InputExpander([real], follow_symlinks=False, dedupe=False):
                if len(out) > limit:
                    break
                if item.error is not None:
                    rec = error_record(item.path, item.error_type or "InputError", item.error)
                    out.append(Outcome(BAD_FILE, rec))
                elif _within(os.path.realpath(item.path), root):
                    out.append((os.path.realpath(item.path), item.path, item.sha256))
                else:
                    rec = error_record(item.path, "UnsafeInputError", "resolves outside the allowed root")
                    out.append(Outcome(BAD_FILE, rec))
        return out


def _paths_from_json(raw: bytes) -> list[str]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "bad_request", "body is not JSON") from None
    paths = doc.get("paths") if isinstance(doc, dict) else None
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise RequestError(400, "bad_request", 'expected {"paths": ["file or folder under --root", ...]}')
    if any(not p or len(p) > MAX_PATH_CHARS or "\x00" in p for p in paths):
        raise RequestError(400, "bad_request", "a path is empty, too long or holds a NUL byte")
    return paths


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def _limited(request: Request, limit: int) -> Request:
    """The same request with a receive channel that raises :class:`BodyTooLargeError` past ``limit`` bytes."""
    seen = [0]
    receive = request.receive

    async def counting_receive() -> dict:
        message = await receive()
        if message["type"] == "http.request":
            seen[0] += len(message.get("body", b""))
            if seen[0] > limit:
                raise BodyTooLargeError()
        return message

    return Request(request.scope, counting_receive)


def _remove(paths: list[str]) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            os.unlink(p)


def create_app(settings: ServeSettings) -> Starlette:
    """The ASGI app: ``uvicorn.run(create_app(ServeSettings(...)))``. Workers start with the app's lifespan."""
    service = ScanService(settings)
    app = Starlette(routes=service.routes(), lifespan=service.lifespan)
    app.add_middleware(ServiceMiddleware, metrics=service.metrics, api_keys=settings.api_keys)
    app.state.service = service
    return app
