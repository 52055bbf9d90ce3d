"""Scanning the images of a chunk: one batched face detection, :func:`forensics_core.faces.crop_faces`, one
batched forward, file evidence in the pool and Grad-CAM here; max over faces per image.

:class:`ImageScanning` holds methods of :class:`forensics.scanning.scanner.Scanner` (its model, detector,
policy and timers), kept apart from the chunk loop and from video."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from forensics.scanning.chunks import Loaded, ScanTimeoutError, WorkerPool
from forensics.scanning.pixels import rescaled, thumbnail
from forensics.scanning.results import FaceResult, FileResult, error_result, timings
from forensics_core.faces.crops import crop_faces
from forensics_core.thresholds import VERDICT_CLEAR


class ImageScanning:
    """Image methods of the Scanner."""

    def _scan_images(self, pool: WorkerPool, images: list[Loaded]) -> list[FileResult]:
        cfg = self.config
        try:
            detections, det_ms = self._detect([ld.det_image for ld in images])
        except Exception as exc:  # noqa: BLE001 - a detector crash must not stop the batch
            if len(images) == 1:
                return [error_result(images[0].item.path, exc, images[0].item)]
            # nor fail the chunk mates of the one image it choked on: again one by one
            return [res for ld in images for res in self._scan_images(pool, [ld])]
        t0 = time.perf_counter()
        crops: list[np.ndarray] = []
        owners: list[tuple[int, Any, bool, bool]] = []  # (image index, face or None, aligned, no_face)
        for i, (ld, faces) in enumerate(zip(images, detections)):
            for c in crop_faces(ld.pixels, [rescaled(f, ld.det_scale) for f in faces], self.spec):
                crops.append(c.pixels)
                owners.append((i, c.face, c.aligned, c.no_face))
        align_ms = (time.perf_counter() - t0) * 1000
        self._add_total("align", align_ms)
        try:
            probs, model_ms = self._predict(crops)
        except Exception as exc:  # noqa: BLE001
            return [error_result(ld.item.path, exc, ld.item) for ld in images]
        per_image: list[list[FaceResult]] = [[] for _ in images]
        crop_share = [0] * len(images)
        for (i, f, aligned, no_face), crop, p in zip(owners, crops, probs):
            ws = images[i].work_scale  # boxes are reported in the file's own pixel coordinates
            h, w = images[i].pixels.shape[0] / ws, images[i].pixels.shape[1] / ws
            fr = FaceResult(
                index=len(per_image[i]),
                box=[v / ws for v in f.box] if f is not None else [0.0, 0.0, float(round(w)), float(round(h))],
                frame=0,
                time_s=0.0,
                track=len(per_image[i]),
                fake_probability=float(p),
                verdict=self.policy.verdict(float(p)) or VERDICT_CLEAR,
                detection_prob=float(f.prob) if f is not None else None,
                aligned=aligned,
                no_face=no_face,
                crop=crop,
            )
            per_image[i].append(fr)
            crop_share[i] += 1
        # file-scope evidence for each image runs in the pool while Grad-CAM runs here
        # the detector's landmarks (in ld.pixels coordinates) let the surround analyses place the face regions
        marks: list[list[Any]] = [[] for _ in images]
        for i, f, _, no_face in owners:
            if not no_face:
                marks[i].append(f.landmarks)
        ev_futs = [
            pool.submit(self._file_evidence, ld.item.path, "image", ld.pixels,
                        [[v * ld.work_scale for v in fr.box] for fr in fs if not fr.no_face], ld.info, ld.work_scale,
                        marks[i])
            for i, (ld, fs) in enumerate(zip(images, per_image))
        ]  # fmt: skip
        out = []
        n_imgs, n_crops = len(images), max(1, len(crops))
        for i, ld in enumerate(images):
            try:  # the file's deadline covers detection, the model and evidence too, not just its decode
                ld.deadline.check("during face detection and scoring")
                t_face = time.perf_counter()
                self._face_evidence(per_image[i])
                face_ev_ms = (time.perf_counter() - t_face) * 1000
                ld.deadline.check("during Grad-CAM evidence")
                file_ev, file_ev_ms = ld.deadline.wait(pool, ev_futs[i], "during evidence analyses")
            except ScanTimeoutError as exc:
                ev_futs[i].cancel()
                out.append(error_result(ld.item.path, exc, ld.item))
                continue
            faces = per_image[i]
            p_file = max(fr.fake_probability for fr in faces)
            res = self._base_result(ld)
            res.faces = faces
            res.no_face = faces[0].no_face
            res.fake_probability = p_file
            res.verdict = self.policy.verdict(p_file)
            res.aggregation = "whole-image centre crop (no face found)" if res.no_face else "max over faces"
            res.frames_sampled = 1
            res.evidence = file_ev
            share = crop_share[i] / n_crops
            res.timings_ms = timings(
                load=ld.load_ms, detect=det_ms / n_imgs, align=align_ms * share, model=model_ms * share,
                evidence=file_ev_ms + face_ev_ms,
            )  # fmt: skip
            if cfg.keep_images:
                res.thumbnail = thumbnail(ld.pixels)
            else:
                for fr in faces:
                    fr.crop = None
            out.append(res)
        return out
