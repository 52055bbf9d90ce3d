"""The :class:`Scanner`: model, face detector and config; the chunk loop (load the next chunk while this one is
detected and scored), loading, evidence and stamping. Images and videos are scanned by its
:class:`~forensics.scanning.images.ImageScanning` and :class:`~forensics.scanning.video.VideoScanning` parts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np

from forensics.evidence import EvidenceResult, EvidenceSubject, run_face_evidence, run_file_evidence
from forensics.scanning.chunks import Deadline, Loaded, ScanTimeoutError, WorkerPool
from forensics.scanning.config import ScanConfig, resolve_model
from forensics.scanning.images import ImageScanning
from forensics.scanning.pixels import downscale
from forensics.scanning.results import (
    FaceResult,
    FileResult,
    compact,
    duplicate_result,
    error_result,
    listing_error_result,
    timings,
    uncompact,
    warn_unsupported_preset,
)
from forensics.scanning.video import VideoScanning
from forensics_core.inputs import InputItem
from forensics_core.plumbing import batched
from forensics_core.thresholds import ThresholdPolicy


class Scanner(ImageScanning, VideoScanning):
    """Holds the model, the face detector and the config; turns :class:`InputItem` streams into results.

    One Scanner is used per process (the Ray engine builds one per actor). The face detector and the model are
    called from the thread that iterates :meth:`scan_items` only: torch modules with Grad-CAM hooks are not
    thread-safe, and batching beats threading for the forward pass anyway.
    """

    def __init__(self, model: Any = "default", config: ScanConfig | None = None, detector: Any = None) -> None:
        self.config = config or ScanConfig()
        if self.config.threads:
            # On a shared or oversubscribed machine torch's default (one thread per core) spins against other
            # processes; MTCNN measured 8x slower with 2 threads than with 1 on a loaded 2-core box.
            import torch

            torch.set_num_threads(int(self.config.threads))
        self.model = resolve_model(model, self.config.device)
        self.policy = ThresholdPolicy.resolve(self.config.threshold, dict(getattr(self.model, "thresholds", {})))
        warn_unsupported_preset(self.policy.policy, getattr(self.model, "card", {}))
        self.spec = self.model.preprocess
        self._detector = detector
        self._limits = self.config.limits()
        self.model_info = {"name": str(self.model.name), "sha256": str(self.model.sha256)}
        self.totals = {"detect": 0.0, "model": 0.0, "load": 0.0, "evidence": 0.0, "align": 0.0}
        self._lock = threading.Lock()
        if self._detector is None:  # load now: a broken detector fails fast and its load time is not "detect" time
            from forensics_core.faces.detectors import get_face_detector

            self._detector = get_face_detector(self.config.face_detector, device=self.config.device)

    @property
    def detector(self) -> Any:
        return self._detector

    # -- timing helpers -----------------------------------------------------------------------------------------
    def _add_total(self, key: str, ms: float) -> None:
        with self._lock:
            self.totals[key] += ms

    def _predict(self, crops: list[np.ndarray]) -> tuple[np.ndarray, float]:
        if not crops:
            return np.zeros(0), 0.0
        t0 = time.perf_counter()
        out = []
        for i in range(0, len(crops), max(1, self.config.batch)):
            out.append(np.asarray(self.model.predict_proba(crops[i : i + self.config.batch]), dtype=np.float64))
        ms = (time.perf_counter() - t0) * 1000
        self._add_total("model", ms)
        return np.concatenate(out).reshape(-1), ms

    def _detect(self, images: list[np.ndarray]) -> tuple[list[list[Any]], float]:
        if not images:
            return [], 0.0
        t0 = time.perf_counter()
        faces = self.detector.detect(images)
        ms = (time.perf_counter() - t0) * 1000
        self._add_total("detect", ms)
        return [f[: self.config.max_faces] for f in faces], ms

    # -- public -------------------------------------------------------------------------------------------------
    def scan_items(self, items: Iterable[InputItem]) -> Iterator[FileResult]:
        """Scan items in chunks of ``batch`` files; yields one :class:`FileResult` per item, in input order."""
        cfg = self.config
        done: dict[str, bytes] = {}  # sha256 -> compressed record of the first copy (for its duplicates)
        # Two pools: prefetched loads of the next chunk (possibly stuck on a hostile file nobody waits for yet) must
        # never hold up the current chunk's evidence or video frame decoding, or a healthy file would time out.
        with WorkerPool(cfg.workers, "load") as loader, WorkerPool(cfg.workers, "work") as pool:
            chunks = batched(items, cfg.batch)
            nxt = next(chunks, None)
            prefetch = self._submit_loads(loader, nxt) if nxt else None
            while nxt is not None:
                chunk, loads = nxt, prefetch
                nxt = next(chunks, None)
                prefetch = self._submit_loads(loader, nxt) if nxt else None  # decode the next chunk meanwhile
                results = self._scan_chunk(loader, pool, chunk, loads)
                for item in chunk:
                    if item.duplicate_of is not None and item.error is None:
                        yield self._duplicate(item, uncompact(done.get(item.sha256)))
                        continue
                    res = results[id(item)]
                    self._stamp(res)
                    if res.status == "ok" and res.sha256:
                        done[res.sha256] = compact(res)
                    yield res

    def _stamp(self, res: FileResult) -> None:
        """Every record names the model and policy (errors too), so a results file is self-describing."""
        res.model = res.model or dict(self.model_info)
        res.threshold = res.threshold or {"policy": self.policy.policy, "value": self.policy.value}
        res.timings_ms = res.timings_ms or timings()

    # -- chunk pipeline -----------------------------------------------------------------------------------------
    def _submit_loads(self, pool: WorkerPool, chunk: list[InputItem]) -> dict[int, tuple[Future, list]]:
        # the list receives the monotonic time the decode actually starts: waiting in the queue is not the file's fault
        out = {}
        for it in chunk:
            if it.error is None and it.duplicate_of is None:
                started: list[float] = []
                out[id(it)] = (pool.submit(self._load, it, started), started)
        return out

    def _load(self, item: InputItem, started: list[float] | None = None) -> Loaded:
        from forensics_core import media

        if started is not None:
            started.append(time.monotonic())
        t0 = time.perf_counter()
        out = Loaded(item)
        try:
            out.kind = media.sniff(item.path)
            if out.kind == "image":
                loaded = media.load_image(item.path, limits=self._limits)
                # An 80 MP photo is 240 MB decoded; a chunk of them (plus the prefetched next chunk) must stay
                # bounded. 4096 px still gives any face far more pixels than a model crop needs.
                out.pixels, out.work_scale = downscale(loaded.pixels, self.config.work_max_side)
                out.info = loaded.info
                out.det_image, out.det_scale = downscale(out.pixels, self.config.detect_max_side)
            else:
                out.info = media.probe(item.path, limits=self._limits, sha256=False)  # hashed already
        except Exception as exc:  # noqa: BLE001 - every failure becomes this file's error record
            out.error = exc
        out.load_ms = (time.perf_counter() - t0) * 1000
        out.loaded_at = time.monotonic()
        self._add_total("load", out.load_ms)
        return out

    def _scan_chunk(
        self,
        loader: WorkerPool,
        pool: WorkerPool,
        chunk: list[InputItem],
        loads: dict[int, tuple[Future, list]] | None,
    ) -> dict[int, FileResult]:
        cfg = self.config
        results: dict[int, FileResult] = {}
        images: list[Loaded] = []
        videos: list[Loaded] = []
        for item in chunk:
            if item.error is not None:
                results[id(item)] = listing_error_result(item)
                continue
            if item.duplicate_of is not None:
                continue
            fut, started = (loads or {})[id(item)]
            if cfg.timeout_s is not None:
                # still queued behind other decodes: its clock starts when its own work does. Loads start in
                # submission order, so what runs ahead of it is an earlier file of this chunk, already waited for
                # (and abandoned and replaced if it was stuck): this wait ends.
                while not started and not fut.done():
                    time.sleep(0.005)
            deadline = Deadline(item.path, cfg.timeout_s, start=started[0] if started else None)
            try:
                loaded = deadline.wait(loader, fut, "while sniffing, opening or decoding")
            except ScanTimeoutError as exc:
                results[id(item)] = error_result(item.path, exc, item)
                continue
            loaded.deadline = deadline
            if loaded.error is not None:
                results[id(item)] = error_result(item.path, loaded.error, item)
            elif loaded.kind == "image":
                images.append(loaded)
            else:
                videos.append(loaded)
        if images:
            for ld in images:
                ld.deadline.pause_since(ld.loaded_at)
            for ld, res in zip(images, self._scan_images(pool, images)):
                results[id(ld.item)] = res
        for ld in videos:
            ld.deadline.pause_since(ld.loaded_at)
            try:
                results[id(ld.item)] = self._scan_video(pool, ld, ld.deadline)
            except Exception as exc:  # noqa: BLE001
                results[id(ld.item)] = error_result(ld.item.path, exc, ld.item)
        return results


    def _base_result(self, ld: Loaded) -> FileResult:
        info = ld.info
        return FileResult(
            path=ld.item.path,
            sha256=ld.item.sha256 or getattr(info, "sha256", ""),
            size_bytes=ld.item.size_bytes or getattr(info, "size_bytes", 0),
            media_type=ld.kind,
            width=getattr(info, "width", None),
            height=getattr(info, "height", None),
            model=dict(self.model_info),
            threshold={"policy": self.policy.policy, "value": self.policy.value},
        )

    # -- evidence -----------------------------------------------------------------------------------------------
    def _file_evidence(
        self, path: str, kind: str, pixels: np.ndarray, boxes: list, info: Any, scale: float = 1.0,
        landmarks: list | None = None,
    ) -> tuple[list[EvidenceResult], float]:
        t0 = time.perf_counter()
        names = self.config.evidence
        if not names:
            return [], 0.0
        subject = EvidenceSubject(
            path=path, media_type=kind, pixels=pixels, face_boxes=[tuple(b) for b in boxes],
            container=str(getattr(info, "container", "") or ""), exif=dict(getattr(info, "exif", {}) or {}),
            pixel_scale=scale, face_landmarks=[np.asarray(lm, dtype=np.float64) for lm in landmarks or []],
        )  # fmt: skip
        res = run_file_evidence(names, subject)
        if not self.config.keep_images:
            for r in res:
                r.heatmap = None
        ms = (time.perf_counter() - t0) * 1000
        self._add_total("evidence", ms)
        return res, ms

    def _face_evidence(self, faces: list[FaceResult]) -> None:
        names = [n for n in self.config.evidence if _is_face_scope(n)]
        if not names:
            return
        t0 = time.perf_counter()
        ranked = sorted((f for f in faces if f.crop is not None), key=lambda f: -f.fake_probability)
        for fr in ranked[: self.config.explain_faces]:
            fr.evidence = run_face_evidence(names, fr.crop, self.model)
            if not self.config.keep_images:
                for e in fr.evidence:
                    e.heatmap = None
        self._add_total("evidence", (time.perf_counter() - t0) * 1000)


    def _duplicate(self, item: InputItem, first: FileResult | None) -> FileResult:
        threshold = {"policy": self.policy.policy, "value": self.policy.value}
        return duplicate_result(item, first, self.model_info, threshold)


def _is_face_scope(name: str) -> bool:
    from forensics.evidence import EVIDENCE

    return EVIDENCE.get(name).meta.get("scope") == "face"
