"""Scanning one video: frames streamed in batches (decode bounded by the file's deadline), a face tracker,
per-track aggregation (mean of the top half of frame probabilities) and the no-face fallback.

:class:`VideoScanning` holds methods of :class:`forensics.scanning.scanner.Scanner`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from forensics.scanning.chunks import Deadline, Loaded, ScanTimeoutError, WorkerPool, decoded_in
from forensics.scanning.pixels import downscale, rescaled, thumbnail
from forensics.scanning.results import FaceResult, FileResult, TrackResult, timings
from forensics_core.faces.crops import crop_faces
from forensics_core.plumbing import batched
from forensics_core.thresholds import VERDICT_CLEAR

FALLBACK_VIDEO_CROPS = 8  # whole-frame crops kept for a video in which no face is ever found


def top_half_mean(probs: Sequence[float]) -> float:
    """Mean of the top ceil(n/2) values: the per-track video aggregate (see module docstring)."""
    v = np.sort(np.asarray(probs, dtype=np.float64))[::-1]
    return float(v[: max(1, math.ceil(len(v) / 2))].mean())


def drop_crops_beyond_top(faces: list[FaceResult], keep: int) -> None:
    with_crop = [f for f in faces if f.crop is not None]
    if len(with_crop) <= keep:
        return
    for f in sorted(with_crop, key=lambda f: -f.fake_probability)[keep:]:
        f.crop = None


@dataclass
class _Follow:
    """Between two full detections of a video: the last sampled frame's faces (detection-sized pixels) and how many
    sampled frames ago the last full detection ran."""

    faces: list[Any] = field(default_factory=list)
    since_detect: int | None = None  # None: no frame yet


class VideoScanning:
    """Video methods of the Scanner."""

    def _detect_tracked(self, frames: list[np.ndarray], follow: _Follow) -> tuple[list[list[Any]], float]:
        """Faces of consecutive sampled frames (detection-sized): a full detection every ``detect_every`` sampled
        frames, and in between the previous frame's faces followed by the detector's ``refine`` (MTCNN's O-Net alone
        on the previous boxes: ~1 ms a face instead of a pyramid over the frame). A frame whose refine loses a face,
        or whose predecessor had none, gets a full detection; so does every frame when ``detect_every`` is 1 or the
        detector cannot refine. New faces are found at the next full detection, at most ``detect_every - 1`` sampled
        frames late."""
        every = max(1, int(self.config.detect_every))
        refine = getattr(self.detector, "refine", None)
        if every == 1 or refine is None:
            return self._detect(frames)
        t0 = time.perf_counter()
        # frames due for a full detection whatever happens between them: run them in one batched call
        due = []
        since = follow.since_detect
        for _ in frames:
            since = 0 if since is None or since + 1 >= every else since + 1
            due.append(since == 0)
        keyed = [k for k, d in enumerate(due) if d]
        found, _ = self._detect([frames[k] for k in keyed]) if keyed else ([], 0.0)
        by_key = dict(zip(keyed, found))
        out: list[list[Any]] = []
        refine_ms = 0.0
        for k, frame in enumerate(frames):
            if k in by_key:
                faces, follow.since_detect = by_key[k], 0
            else:
                t1 = time.perf_counter()
                faces = refine([frame], [[f.box for f in follow.faces]])[0] if follow.faces else []
                refine_ms += (time.perf_counter() - t1) * 1000
                follow.since_detect = (follow.since_detect or 0) + 1
                if not follow.faces or len(faces) < len(follow.faces):  # none to follow, or one was lost: look again
                    faces = self._detect([frame])[0][0]
                    follow.since_detect = 0
                faces = faces[: self.config.max_faces]
            follow.faces = faces
            out.append(faces)
        self._add_total("detect", refine_ms)  # full detections were added by _detect
        return out, (time.perf_counter() - t0) * 1000

    # -- video --------------------------------------------------------------------------------------------------
    def _scan_video(self, pool: WorkerPool, ld: Loaded, deadline: Deadline) -> FileResult:
        from forensics_core import media
        from forensics_core.faces.tracking import IoUTracker

        cfg = self.config
        info = ld.info
        fps = cfg.fps
        duration = getattr(info, "duration_s", None)
        if duration and duration > 0 and cfg.max_frames / duration < fps:
            fps = cfg.max_frames / duration  # spread the frame budget over the whole clip
        tracker = IoUTracker()
        follow = _Follow()
        faces: list[FaceResult] = []
        fallback: list[tuple[int, float, np.ndarray]] = []
        # (max p, frame pixels, boxes, landmarks) of the frame whose face scored highest
        best: tuple[float, np.ndarray | None, list, list] = (-1.0, None, [], [])
        first_frame: np.ndarray | None = None
        det_ms = model_ms = align_ms = 0.0
        sampled = 0
        frames = media.iter_frames(ld.item.path, fps=fps, limits=self._limits)
        stuck = False
        try:
            # islice stops after max_frames without pulling (decoding) one more
            for batch in batched(islice(decoded_in(pool, frames, deadline), cfg.max_frames), cfg.batch):
                deadline.check(f"after {sampled} sampled frames")
                sampled += len(batch)
                if first_frame is None:
                    first_frame = batch[0].pixels.copy()
                small = [downscale(fr.pixels, cfg.detect_max_side) for fr in batch]
                dets, ms = self._detect_tracked([s[0] for s in small], follow)
                det_ms += ms
                t0 = time.perf_counter()
                crops, meta = [], []
                for fr, (_, s), fs in zip(batch, small, dets):
                    fs = [rescaled(f, s) for f in fs]
                    ids = tracker.update([f.box for f in fs])
                    if fs:
                        for c, tid in zip(crop_faces(fr.pixels, fs, self.spec), ids):
                            crops.append(c.pixels)
                            meta.append((fr, c.face, tid, c.aligned))
                    elif len(fallback) < FALLBACK_VIDEO_CROPS:  # the whole-frame centre crop
                        fallback.append((fr.index, float(fr.time_s), crop_faces(fr.pixels, [], self.spec)[0].pixels))
                align_ms += (time.perf_counter() - t0) * 1000
                probs, ms = self._predict(crops)
                model_ms += ms
                frame_best: dict[int, tuple[float, Any]] = {}
                frame_marks: dict[int, list] = {}
                for (fr, f, tid, aligned), crop, p in zip(meta, crops, probs):
                    faces.append(
                        FaceResult(
                            index=len(faces), box=list(f.box), frame=int(fr.index), time_s=float(fr.time_s),
                            track=int(tid), fake_probability=float(p), verdict=self.policy.verdict(float(p)) or "",
                            detection_prob=float(f.prob), aligned=aligned, crop=crop,
                        )
                    )  # fmt: skip
                    if p > frame_best.get(fr.index, (-1.0, None))[0]:
                        frame_best[fr.index] = (float(p), fr)
                    frame_marks.setdefault(fr.index, []).append(f.landmarks)
                for p, fr in frame_best.values():
                    if p > best[0]:
                        boxes = [fc.box for fc in faces if fc.frame == fr.index]
                        best = (p, fr.pixels.copy(), boxes, frame_marks.get(fr.index, []))
                drop_crops_beyond_top(faces, cfg.explain_faces)  # memory: keep only the crops Grad-CAM may use
        except ScanTimeoutError:
            stuck = True
            raise
        finally:
            if not stuck:  # a decoder abandoned mid-frame still runs in its worker: closing it there would race
                frames.close()
        if sampled == 0:
            raise media.TruncatedMediaError(ld.item.path, "no decodable video frame")
        deadline.check("during face detection and scoring")
        res = self._base_result(ld)
        res.frames_sampled = sampled
        if faces:
            by_track: dict[int, list[FaceResult]] = {}
            for fc in faces:
                by_track.setdefault(fc.track, []).append(fc)
            for tid, fs in sorted(by_track.items()):
                p = top_half_mean([fc.fake_probability for fc in fs])
                res.tracks.append(
                    TrackResult(tid, len(fs), fs[0].frame, fs[-1].frame, p, self.policy.verdict(p) or VERDICT_CLEAR)
                )
            long_tracks = [t for t in res.tracks if t.n_faces >= cfg.min_track_faces] or res.tracks
            res.fake_probability = max(t.fake_probability for t in long_tracks)
            res.aggregation = (
                f"video: per-track mean of top half of frame probabilities; max over tracks with >= "
                f"{cfg.min_track_faces} faces"
            )
        else:
            probs, ms = self._predict([c for _, _, c in fallback])
            model_ms += ms
            h, w = first_frame.shape[:2] if first_frame is not None else (0, 0)
            for (idx, t, crop), p in zip(fallback, probs):
                faces.append(
                    FaceResult(
                        index=len(faces), box=[0.0, 0.0, float(w), float(h)], frame=idx, time_s=t, track=-1,
                        fake_probability=float(p), verdict=self.policy.verdict(float(p)) or "", aligned=False,
                        no_face=True, crop=crop,
                    )
                )  # fmt: skip
            res.no_face = True
            res.fake_probability = top_half_mean(probs) if len(probs) else None
            res.aggregation = "video without faces: mean of top half of whole-frame centre-crop probabilities"
            drop_crops_beyond_top(faces, cfg.explain_faces)
        res.faces = faces
        res.verdict = self.policy.verdict(res.fake_probability)
        rep = best[1] if best[1] is not None else first_frame
        t_ev = time.perf_counter()
        self._face_evidence(faces)
        ev_ms = (time.perf_counter() - t_ev) * 1000
        if rep is not None and cfg.evidence:
            deadline.check("before evidence")
            fut = pool.submit(self._file_evidence, ld.item.path, "video", rep, best[2], info, 1.0, best[3])
            file_ev, ms = deadline.wait(pool, fut, "during evidence analyses")
            res.evidence, ev_ms = file_ev, ev_ms + ms
        if cfg.keep_images and rep is not None:
            res.thumbnail = thumbnail(rep)
        if not cfg.keep_images:
            for fc in faces:
                fc.crop = None
        res.timings_ms = timings(load=ld.load_ms, detect=det_ms, align=align_ms, model=model_ms, evidence=ev_ms)
        return res
