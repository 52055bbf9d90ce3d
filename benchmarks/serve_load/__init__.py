"""Load benchmark of ``forensics serve``: throughput, latency percentiles, error mix and peak RSS on loopback, the
ratio to ``forensics scan`` on the same files, and a soak run in which a scanner process is killed mid-way.

What it does, all bounded (``--requests`` requests, ``--max-seconds`` per phase, ``--client-timeout`` per request):

1. builds the file set: ``--good`` face images (the shared FFHQ and TPDNE StyleGAN2 crossval faces when present,
   never copied into the repo; else generated crops of scikit-image's astronaut) plus hostile files written to a
   temp dir (text renamed .jpg, truncated PNG, a PNG declaring 900 MP, a ZIP renamed .jpg, an upload over the
   size limit), about ``--hostile`` of the mix;
2. scans the same unique files with ``forensics scan --jsonl -`` (``--threads = workers x threads``) and takes its
   steady rate: records after the first chunk / time from the first chunk to the last record (model loading
   excluded, as the service's is);
3. starts ``forensics serve`` on a free loopback port, waits for ``/readyz``, and sends ``--requests`` raw-body
   uploads from ``--concurrency`` keep-alive connections (a minimal asyncio HTTP/1.1 client: the load generator
   must not eat the CPU it measures), cycling through the files; an upload over the limit is sent with
   ``Expect: 100-continue`` like curl does, so the 413 comes before the body;
4. checks every answer: the ``X-Request-ID`` echoes the request's, and a record's ``sha256`` is the sha256 of
   the bytes sent (an answer given to the wrong request would show here); counts status codes and causes;
5. with ``--kill-after F``, SIGKILLs one scanner process after a fraction F of the requests and asserts that every
   request still got exactly one answer and that the server answered exactly as many files as it admitted.

Peak RSS is the largest sum of VmRSS over the server and its scanner processes, sampled every 0.2 s (Linux /proc).

The package, one job per module (``python -m benchmarks.serve_load`` runs :mod:`.cli`): :mod:`.files` (the file
set), :mod:`.processes` (the server under test, the scan baseline, RSS / CPU from ``/proc``), :mod:`.client` (load
generation and answer checks), :mod:`.measure` (one run, end to end), :mod:`.report` (the record, JSON and
markdown), :mod:`.cli` (the options).

Example::

    python -m benchmarks.serve_load --requests 2000 --concurrency 16 --workers 1 --name w1
    python -m benchmarks.serve_load --requests 1000 --concurrency 16 --workers 2 --kill-after 0.3 --name soak-w2
"""

from __future__ import annotations

from benchmarks.serve_load.cli import (
    main,
)
from benchmarks.serve_load.client import (
    Answer,
    Conn,
    run_load,
)
from benchmarks.serve_load.files import (
    UPLOAD_MB,
    Sample,
    _png_declaring,
    good_files,
    hostile_files,
    interleave,
)
from benchmarks.serve_load.measure import (
    _pct,
    run,
)
from benchmarks.serve_load.processes import (
    RssSampler,
    ServerProcess,
    _children,
    _cpu_s,
    _free_port,
    _rss_kb,
    scan_baseline,
)
from benchmarks.serve_load.report import (
    RESULTS,
    LoadReport,
    _default_model,
    header_lines,
    machine_summary,
    write_report,
)

__all__ = [
    "Answer",
    "Conn",
    "LoadReport",
    "RESULTS",
    "RssSampler",
    "Sample",
    "ServerProcess",
    "UPLOAD_MB",
    "_children",
    "_cpu_s",
    "_default_model",
    "_free_port",
    "_pct",
    "_png_declaring",
    "_rss_kb",
    "good_files",
    "header_lines",
    "hostile_files",
    "interleave",
    "machine_summary",
    "main",
    "run",
    "run_load",
    "scan_baseline",
    "write_report",
]
