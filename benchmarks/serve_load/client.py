"""Load generation: a minimal asyncio HTTP/1.1 client, ``--concurrency`` keep-alive connections sending raw
uploads (an oversize one with ``Expect: 100-continue``, as curl does) and checking that every answer belongs to its
request. Minimal on purpose: the client must not eat the CPU it measures."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.serve_load.files import Sample


@dataclass
class Answer:
    index: int
    status: int  # 0 = no answer (connection error or client timeout)
    latency_s: float
    cause: str = ""
    problem: str = ""  # a wrong request id or sha256: an answer that belongs to another request


class Conn:
    """One keep-alive HTTP/1.1 connection; reconnects after the server closes it (e.g. after a 413)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def _head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        await self._open()
        assert self.reader is not None and self.writer is not None
        expect = len(body) > 1024 * 1024  # as curl: ask before sending a large body
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
                "Content-Type: application/octet-stream", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
        if expect:
            head.append("Expect: 100-continue")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if not expect:
            self.writer.write(body)
        await self.writer.drain()
        status, hdrs = await self._head()
        if status == 100:
            self.writer.write(body)
            await self.writer.drain()
            status, hdrs = await self._head()
        n = int(hdrs.get("content-length", "0"))
        data = await self.reader.readexactly(n) if n else b""
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, data


async def run_load(port: int, files: list[Sample], n: int, concurrency: int, client_timeout: float,
                   max_seconds: float, on_progress: Any = None) -> tuple[list[Answer], float]:  # fmt: skip
    answers: list[Answer] = []
    counter = iter(range(n))
    end = time.monotonic() + max_seconds

    async def one(conn: Conn, i: int) -> Answer:
        f = files[i % len(files)]
        rid = f"bench-{i}"
        t0 = time.perf_counter()
        try:
            status, hdrs, body = await asyncio.wait_for(
                conn.post(f"/v1/scan?filename={f.name}", f.data, {"X-Request-ID": rid}), client_timeout
            )
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            conn.close()
            return Answer(i, 0, time.perf_counter() - t0, problem=f"no answer: {type(exc).__name__}")
        dt = time.perf_counter() - t0
        a = Answer(i, status, dt)
        if hdrs.get("x-request-id") != rid:
            a.problem = f"request id {hdrs.get('x-request-id')!r} != {rid!r}"
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = {}
        if status in (200, 422):
            if doc.get("sha256") != f.sha256:
                a.problem = "record sha256 is not the sha256 of the upload"
            a.cause = "ok" if status == 200 else str(doc.get("error_type"))
        else:
            a.cause = str(doc.get("cause", status))
        return a

    async def client() -> None:
        conn = Conn(port)
        for i in counter:
            if time.monotonic() > end:
                break
            a = await one(conn, i)
            answers.append(a)
            if on_progress is not None:
                on_progress(len(answers))
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return answers, time.perf_counter() - t0
