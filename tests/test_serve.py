"""``forensics serve``: the real server (uvicorn subprocess, one scanner process, shipped model) on a free loopback
port, every endpoint and every limit: API key, request ids, upload / pixel / batch / queue limits, root escapes,
per-request timeout, a worker frozen (SIGSTOP) or killed (SIGKILL) mid-request, metrics text and JSON logs.

Freezing the worker with SIGSTOP makes "queue full" and "timeout" deterministic without test-only server code.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli
from forensics_core.config import REPO_ROOT

KEY = "test-key-0123456789abcdef"
QUEUE = 4
UPLOAD_LIMIT = 1024 * 1024  # --max-upload-mb 1
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="POSIX signals")


class Server:
    def __init__(self, port: int, proc: subprocess.Popen, root: Path, log: Path) -> None:
        self.port, self.proc, self.root, self.log = port, proc, root, log

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
        key: str | None = KEY, timeout: float = 60.0,
    ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        h = dict(headers or {})
        if key:
            h["Authorization"] = f"Bearer {key}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, **kw) -> tuple[int, dict[str, str], dict]:
        status, headers, body = self.request(method, path, **kw)
        return status, headers, json.loads(body)

    def worker_pid(self) -> int:
        return self.wait_ready()["workers"][0]["pid"]

    def wait_ready(self, timeout: float = 90.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                status, _, body = self.request("GET", "/readyz", key=None, timeout=5)
                if status == 200:
                    return json.loads(body)
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def metric(self, line_start: str) -> float:
        _, _, body = self.request("GET", "/metrics")
        for line in body.decode().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def multipart(files: list[tuple[str, bytes]], field: str = "file") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, data in files:
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n".encode())  # fmt: skip
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def face_png() -> bytes:
    from skimage import data

    return _png(np.asarray(Image.fromarray(data.astronaut()).resize((160, 160), Image.LANCZOS)))


@pytest.fixture(scope="module")
def other_png() -> bytes:
    y, x = np.mgrid[0:96, 0:128]
    return _png(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, face_png: bytes) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("serve")
    root = d / "root"
    (root / "sub").mkdir(parents=True)
    (root / "face.png").write_bytes(face_png)
    (root / "sub" / "face2.png").write_bytes(face_png)
    (d / "secret.png").write_bytes(face_png)
    (root / "sub" / "link.png").symlink_to(d / "secret.png")
    keys = d / "keys"
    keys.write_text(f"# one key per line\n{KEY}\n")
    keys.chmod(0o600)
    log = d / "serve.log"
    port = _free_port()
    cmd = [sys.executable, "-m", "cli", "serve", "--port", str(port), "--workers", "1", "--threads", "1",
           "--device", "cpu", "--queue", str(QUEUE), "--max-batch-files", str(QUEUE), "--max-upload-mb", "1",
           "--max-pixels", "1000000", "--timeout", "30", "--root", str(root), "--api-key-file", str(keys)]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=Path(cli.__file__).parent)
    srv = Server(port, proc, root, log)
    try:
        srv.wait_ready()
        yield srv
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()[-3000:]  # uvicorn re-raises SIGTERM when done


def test_serve_help_is_torch_free_and_has_example() -> None:
    code = "import sys, cli\ncli.main(['serve', '--help'])\nprint('TORCH', 'torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Example: forensics serve" in r.stdout and "TORCH False" in r.stdout
    assert "serve" in subprocess.run([sys.executable, "-m", "cli", "--help"], capture_output=True, text=True).stdout


def test_bad_options_fail_before_starting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--queue", "2", "--max-batch-files", "3"]) == 2
    assert "could never be admitted" in capsys.readouterr().err
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    keys.chmod(0o644)
    assert cli.main(["serve", "--api-key-file", str(keys)]) == 2
    assert "chmod 600" in capsys.readouterr().err
    assert cli.main(["serve", "--model", str(tmp_path / "nope")]) == 2
    assert "no such model" in capsys.readouterr().err
    assert cli.main(["serve", "--threshold", "fpr5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'fpr5'" in err[0] and "balanced, fpr1, fpr01" in err[0]
    # FPR1 (as --help once printed it) passes the threshold check and stops at the next bad option instead
    assert cli.main(["serve", "--threshold", "FPR1", "--queue", "2", "--max-batch-files", "3"]) == 2
    assert "could never be admitted" in capsys.readouterr().err
    assert cli.main(["serve", "--face-detector", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_a_model_that_cannot_load_keeps_the_service_unready(tmp_path: Path) -> None:
    """The card is fine (checked at start-up) but the weights are not: /readyz says why, scans get 503."""
    from forensics.scanning.config import DEFAULT_MODEL_DIR

    model = tmp_path / "broken"
    model.mkdir()
    (model / "model.json").write_text((DEFAULT_MODEL_DIR / "model.json").read_text())
    (model / "model.safetensors").write_bytes(b"not safetensors at all")
    port = _free_port()
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "cli", "serve", "--port", str(port), "--model", str(model), "--device", "cpu"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=Path(cli.__file__).parent)
    srv = Server(port, proc, tmp_path, log)
    try:
        end, state = time.monotonic() + 90, {}
        while time.monotonic() < end and not (state.get("workers") or [{}])[0].get("error"):
            time.sleep(0.3)
            with contextlib.suppress(OSError):
                status, _, state = srv.json("GET", "/readyz", key=None, timeout=5)
        assert status == 503 and state["ready"] is False and "model.safetensors" in state["workers"][0]["error"]
        status, headers, body = srv.json("POST", "/v1/scan", body=b"x", key=None)
        assert status == 503 and body["cause"] == "unavailable" and headers["retry-after"] == "5"
        assert srv.json("GET", "/healthz", key=None)[0] == 200  # alive, just not ready
    finally:
        proc.terminate()
        proc.wait(30)


def test_probes_model_card_and_api_key(server: Server) -> None:
    status, headers, body = server.json("GET", "/healthz", key=None)
    assert status == 200 and body == {"status": "ok"} and len(headers["x-request-id"]) == 32
    status, _, body = server.json("GET", "/readyz", key=None)
    assert status == 200 and body["ready"] and body["workers"][0]["state"] in ("ready", "busy")
    for path, method in (("/v1/model", "GET"), ("/metrics", "GET"), ("/v1/scan", "POST")):
        status, headers, _ = server.request(method, path, key=None)
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        assert server.request(method, path, key="wrong-key-0123456789")[0] == 401
    status, _, body = server.json("GET", "/v1/model", headers={"X-API-Key": KEY}, key=None)
    assert status == 200
    card = body["model"]
    shipped = json.loads((REPO_ROOT / "forensics/assets/models/default/model.json").read_text())
    assert card["name"] == shipped["name"] and card["sha256"] == shipped["weights_sha256"]
    assert set(card["thresholds"]) == {"balanced", "fpr1", "fpr01"}
    # no --threshold: the default policy, fpr1 (balanced flags a fifth of unseen real photos: forensics_core.thresholds)
    assert card["active_threshold"] == {"policy": "fpr1", "value": shipped["thresholds"]["fpr1"]}
    # how many validation reals each preset rests on, and whether its FPR is estimable, exactly as the card says
    assert card["threshold_support"] == shipped["threshold_support"] and set(card["threshold_support"]) >= {"fpr1"}
    assert all(isinstance(v["estimable"], bool) and v["n_real"] > 0 for v in card["threshold_support"].values())
    assert body["limits"] == {"max_upload_bytes": UPLOAD_LIMIT, "max_pixels": 1_000_000, "max_batch_files": QUEUE,
                              "timeout_s": 30.0, "queue": QUEUE, "server_paths": True}  # fmt: skip


def test_scan_record_is_the_scan_jsonl_record(server: Server, face_png: bytes, tmp_path: Path) -> None:
    body, ctype = multipart([("astronaut face.png", face_png)])
    hdrs = {"Content-Type": ctype, "X-Request-ID": "moderation-42"}
    status, headers, rec = server.json("POST", "/v1/scan", body=body, headers=hdrs)
    assert status == 200 and headers["x-request-id"] == "moderation-42"
    assert headers["content-type"] == "application/json"
    assert rec["path"] == "astronaut face.png" and rec["status"] == "ok" and rec["n_faces"] >= 1
    # the raw-body form gives the same answer
    status, headers, raw = server.json("POST", "/v1/scan?filename=../../x.png", body=face_png,
                                       headers={"X-Request-ID": "bad id with spaces"})  # fmt: skip
    assert status == 200 and raw["path"] == "x.png" and raw["fake_probability"] == rec["fake_probability"]
    assert headers["x-request-id"] != "bad id with spaces"
    # the same file through `forensics scan --jsonl`: identical record apart from path and timings
    (tmp_path / "face.png").write_bytes(face_png)
    out = tmp_path / "out.jsonl"
    subprocess.run([sys.executable, "-m", "cli", "-q", "scan", str(tmp_path / "face.png"), "--jsonl", str(out),
                    "--device", "cpu", "--threads", "1", "--no-table"], check=False, timeout=120)  # fmt: skip
    ref = json.loads(out.read_text().splitlines()[0])
    assert set(ref) == set(rec)
    for k in set(ref) - {"path", "timings_ms"}:
        assert rec[k] == ref[k], k


def test_bad_files_are_422_and_never_take_the_worker_down(server: Server, face_png: bytes) -> None:
    pid = server.worker_pid()
    bomb = _png(np.zeros((1001, 1000, 3), np.uint8))  # 1.001 MP > --max-pixels 1,000,000, a few KB on disk
    cases = {
        "text.jpg": (b"this is not a picture\n", "UnsupportedMediaError"),
        "truncated.png": (face_png[: len(face_png) // 3], None),
        "bomb.png": (bomb, "MediaTooLargeError"),
        "pickle.pt": (b"\x80\x04\x95" + os.urandom(64), "UnsupportedMediaError"),
    }
    for name, (data, etype) in cases.items():
        status, _, rec = server.json("POST", f"/v1/scan?filename={name}", body=data)
        assert status == 422, (name, rec)
        assert rec["status"] == "error" and rec["path"] == name and "\n" not in rec["error"]
        assert rec["error"].startswith(name) and "forensics-serve-" not in rec["error"]  # no spool path leaks
        if etype:
            assert rec["error_type"] == etype, rec
    status, _, body = server.json("POST", "/v1/scan", body=b"")
    assert status == 400 and body["cause"] == "bad_request" and body["request_id"]
    assert server.json("POST", "/v1/scan", body=face_png)[0] == 200
    assert server.worker_pid() == pid  # the same scanner process answered all of them


def _raw_post(server: Server, head: bytes, body: bytes = b"") -> bytes:
    """Headers (and a body) over a socket: the server must answer having read *everything* sent, or closing the
    socket would reset the connection and lose the answer; so these bodies stop right where the limit trips."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"POST /v1/scan HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n" + head
                  + b"\r\n" + body)  # fmt: skip
        reply = b""
        while chunk := s.recv(4096):  # the 413 answer says Connection: close
            reply += chunk
        return reply


def test_upload_limits_413(server: Server, face_png: bytes) -> None:
    # declared too large: refused from the headers alone, before a byte of the body is read
    reply = _raw_post(server, f"Content-Length: {UPLOAD_LIMIT + 1}\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 413") and b'"cause":"too_large"' in reply
    # chunked (no Content-Length): refused while counting, as soon as the limit is passed
    chunk = b"x" * (UPLOAD_LIMIT + 1)
    reply = _raw_post(server, b"Transfer-Encoding: chunked\r\n", f"{len(chunk):x}\r\n".encode() + chunk)
    assert reply.startswith(b"HTTP/1.1 413")
    body, ctype = multipart([(f"f{i}.png", face_png) for i in range(QUEUE + 1)])
    status, _, out = server.json("POST", "/v1/scan/batch", body=body, headers={"Content-Type": ctype})
    assert status == 400 and "files" in out["error"], out  # more file fields than --max-batch-files


def test_batch_multipart_streams_records_in_order(server: Server, face_png: bytes, other_png: bytes) -> None:
    files = [("a.png", face_png), ("b.jpg", b"GIF89a not really"), ("c.png", other_png)]
    body, ctype = multipart(files, field="files")
    status, headers, raw = server.request("POST", "/v1/scan/batch", body=body, headers={"Content-Type": ctype})
    assert status == 200 and headers["content-type"].startswith("application/x-ndjson")
    recs = [json.loads(line) for line in raw.decode().splitlines()]
    assert [r["path"] for r in recs] == ["a.png", "b.jpg", "c.png"]
    assert [r["status"] for r in recs] == ["ok", "error", "ok"]
    assert recs[2]["no_face"] is True


def test_batch_server_paths_stay_under_root(server: Server) -> None:
    doc = {"paths": ["face.png", "sub", "missing.png"]}
    status, _, raw = server.request("POST", "/v1/scan/batch", body=json.dumps(doc).encode(),
                                    headers={"Content-Type": "application/json"})  # fmt: skip
    assert status == 200
    recs = {Path(r["path"]).name: r for r in map(json.loads, raw.decode().splitlines())}
    assert recs["face.png"]["status"] == "ok" and recs["face2.png"]["status"] == "ok"
    assert recs["link.png"]["error_type"] == "UnsafeInputError"  # a symlink out of the root, inside a folder
    assert recs["missing.png"]["status"] == "error"
    for bad in ("../secret.png", str(server.root.parent / "secret.png"), "sub/link.png", "/etc/passwd"):
        status, _, body = server.json("POST", "/v1/scan/batch", body=json.dumps({"paths": [bad]}).encode(),
                                      headers={"Content-Type": "application/json"})  # fmt: skip
        assert status == 403 and body["cause"] == "forbidden_path", bad
    for doc_bytes in (b"not json", b'{"paths": "face.png"}', b'{"paths": ["a\\u0000b"]}'):
        status, _, body = server.json("POST", "/v1/scan/batch", body=doc_bytes,
                                      headers={"Content-Type": "application/json"})  # fmt: skip
        assert status == 400, doc_bytes


def _post_batch_in_thread(server: Server, files: list[tuple[str, bytes]], out: list) -> threading.Thread:
    body, ctype = multipart(files)

    def run() -> None:
        out.append(server.request("POST", "/v1/scan/batch", body=body, headers={"Content-Type": ctype}))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _wait_pending(server: Server, n: int) -> None:
    end = time.monotonic() + 20
    while time.monotonic() < end:
        st = server.json("GET", "/readyz", key=None)[2]
        if st["queue_depth"] + st["in_flight"] >= n:
            return
        time.sleep(0.05)
    raise AssertionError("jobs were not admitted")


def test_queue_full_is_429_with_retry_after(server: Server, face_png: bytes) -> None:
    pid = server.worker_pid()
    os.kill(pid, signal.SIGSTOP)  # the worker holds its jobs: the queue fills deterministically
    out: list = []
    try:
        t = _post_batch_in_thread(server, [(f"q{i}.png", face_png) for i in range(QUEUE)], out)
        _wait_pending(server, QUEUE)
        status, headers, body = server.json("POST", "/v1/scan", body=face_png)
        assert status == 429 and body["cause"] == "queue_full"
        assert 1 <= int(headers["retry-after"]) <= 60
        assert server.metric("forensics_serve_queue_depth") + server.metric("forensics_serve_jobs_in_flight") == QUEUE
    finally:
        os.kill(pid, signal.SIGCONT)
    t.join(60)
    status, _, raw = out[0]
    assert status == 200 and [json.loads(x)["status"] for x in raw.decode().splitlines()] == ["ok"] * QUEUE


def test_timeout_is_504_and_the_hung_worker_is_replaced(server: Server, face_png: bytes) -> None:
    pid = server.worker_pid()
    os.kill(pid, signal.SIGSTOP)  # stands in for a decoder that never returns
    t0 = time.monotonic()
    status, _, rec = server.json("POST", "/v1/scan?filename=slow.png", body=face_png, headers={"X-Timeout": "1.5"})
    assert status == 504 and rec["error_type"] == "ScanTimeoutError" and rec["path"] == "slow.png"
    assert time.monotonic() - t0 < 10
    new = server.worker_pid()
    assert new != pid
    assert server.json("POST", "/v1/scan", body=face_png)[0] == 200
    assert server.metric("forensics_serve_worker_restarts_total") >= 1


def test_killed_worker_loses_and_duplicates_nothing(server: Server, face_png: bytes, other_png: bytes) -> None:
    pid = server.worker_pid()
    os.kill(pid, signal.SIGSTOP)
    files = [(f"k{i}.png", face_png if i % 2 else other_png) for i in range(QUEUE)]
    out: list = []
    t = _post_batch_in_thread(server, files, out)
    _wait_pending(server, QUEUE)
    os.kill(pid, signal.SIGKILL)  # mid-chunk: every job was in flight in this process
    t.join(90)
    status, _, raw = out[0]
    recs = [json.loads(x) for x in raw.decode().splitlines()]
    assert status == 200 and [r["path"] for r in recs] == [n for n, _ in files]  # each once, in order
    assert all(r["status"] == "ok" for r in recs)
    assert server.worker_pid() != pid


def test_metrics_text(server: Server, face_png: bytes) -> None:
    server.request("POST", "/v1/scan", body=face_png)
    status, headers, body = server.request("GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for needle in (
        'forensics_serve_requests_total{code="200",endpoint="/v1/scan"}',
        'forensics_serve_errors_total{cause="bad_file"}',
        'forensics_serve_errors_total{cause="too_large"}',
        'forensics_serve_errors_total{cause="unauthorized"}',
        'forensics_serve_errors_total{cause="forbidden_path"}',
        'forensics_serve_request_duration_seconds_bucket{endpoint="/v1/scan",le="0.5"}',
        "forensics_serve_queue_depth ",
        "forensics_serve_images_per_second ",
        "forensics_serve_workers_ready 1.0",
        'forensics_serve_file_errors_total{error_type="MediaTooLargeError"}',
    ):
        assert needle in text, needle
    assert server.metric("forensics_serve_images_per_second") > 0


def _verdict_counts(server: Server) -> dict[tuple[str, str], float]:
    _, _, body = server.request("GET", "/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("forensics_serve_verdicts_total{"):
            labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1 : line.index("}")].split(","))
            out[(labels["policy"].strip('"'), labels["verdict"].strip('"'))] = float(line.rsplit(" ", 1)[1])
    return out


def test_metrics_count_verdicts_by_policy(server: Server, face_png: bytes) -> None:
    """``forensics_serve_verdicts_total{policy, verdict}``: one per scored file, under the policy that decided it,
    so a dashboard can watch the flag rate drift; a file that could not be scored has no verdict and adds none."""
    _, _, rec = server.json("POST", "/v1/scan", body=face_png)
    key = (rec["threshold"]["policy"], rec["verdict"])
    assert key[0] == "fpr1" and key[1] in ("flagged", "not_flagged")  # the default policy
    before = _verdict_counts(server)
    assert before.get(key, 0) >= 1
    server.request("POST", "/v1/scan", body=face_png)
    status, _, _ = server.request("POST", "/v1/scan?filename=notes.jpg", body=b"not a picture at all\n" * 8)
    assert status == 422
    after = _verdict_counts(server)
    assert after[key] == before[key] + 1 and sum(after.values()) == sum(before.values()) + 1


def test_logs_are_json_lines_with_request_ids(server: Server, face_png: bytes) -> None:
    server.request("POST", "/v1/scan", body=face_png, headers={"X-Request-ID": "log-check-7"})
    time.sleep(0.2)
    lines = [json.loads(x) for x in server.log.read_text().splitlines() if x.strip()]
    assert all({"ts", "level", "logger", "msg"} <= set(x) for x in lines)
    mine = [x for x in lines if x.get("request_id") == "log-check-7"]
    assert mine and mine[-1]["status"] == 200 and mine[-1]["path"] == "/v1/scan" and mine[-1]["duration_ms"] > 0
    assert not any(KEY in json.dumps(x) for x in lines)  # keys never reach the log


def test_load_benchmark_hostile_files_are_refused_as_the_report_says(server: Server, face_png: bytes) -> None:
    """``benchmarks.serve_load``'s hostile set against a live server: each kind fails the way its report counts."""
    from benchmarks.serve_load import Sample, hostile_files, interleave

    good = [Sample("face.png", face_png, "good")]
    hostile = hostile_files(5, good)
    expected = {"text": "UnsupportedMediaError", "truncated": "TruncatedMediaError", "bomb": "MediaTooLargeError",
                "zip": "UnsupportedMediaError"}  # fmt: skip
    for h in hostile:
        if h.kind == "oversize":
            assert len(h.data) > UPLOAD_LIMIT
            continue
        status, _, rec = server.json("POST", f"/v1/scan?filename={h.name}", body=h.data)
        assert status == 422 and rec["error_type"] == expected[h.kind] and rec["sha256"] == h.sha256, (h.kind, rec)
    mixed = interleave(good * 20, hostile)
    assert len(mixed) == 25 and [s.kind for s in mixed[:4]] == ["good", "good", "good", "good"]


def test_load_report_names_the_model_it_measured() -> None:
    """A serve load number is only comparable with the model it was measured with: the record and its markdown
    header carry the shipped model's name and weights hash."""
    from dataclasses import asdict

    from benchmarks.serve_load import LoadReport, _default_model, header_lines

    shipped = json.loads((REPO_ROOT / "forensics/assets/models/default/model.json").read_text())
    model = _default_model()
    assert model == {"name": shipped["name"], "sha256": shipped["weights_sha256"]}
    rep = LoadReport(name="t", command="python -m benchmarks.serve_load", git_commit="abc", config={},
                     machine={"cpus": 2, "platform": "x", "python": "3", "load_avg_at_start": [0.0, 0.0, 0.0]},
                     files={"unique": 0, "good": 0}, model=model)
    assert f"model `{shipped['name']}` (weights sha256 `{shipped['weights_sha256'][:16]}`)" in header_lines(rep)[2]
    assert asdict(rep)["model"] == model
