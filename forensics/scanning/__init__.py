"""The scan pipeline: media -> faces -> aligned crops -> calibrated P(fake) -> verdicts, evidence and timings.

``forensics scan`` and the Python API (``from forensics import scan``, :mod:`forensics.pipeline`) both run
:class:`forensics.scanning.scanner.Scanner`. One module per job:

- :mod:`~forensics.scanning.results`: the result schema (``FileResult``, ``FaceResult``, ``TrackResult``), error and
  duplicate records, the threshold-preset warning (the policies themselves: :mod:`forensics_core.thresholds`);
- :mod:`~forensics.scanning.config`: ``ScanConfig`` and ``resolve_model``;
- :mod:`~forensics.scanning.chunks`: the chunk scheduler's parts (deadlines, worker pool, chunk / frame batching);
- :mod:`~forensics.scanning.pixels`: detection downscale, faces mapped back, thumbnails;
- :mod:`~forensics.scanning.images` / :mod:`~forensics.scanning.video`: scanning images / one video;
- :mod:`~forensics.scanning.scanner`: the ``Scanner`` (chunk loop, loading, evidence, stamping).

Faces are cut by :func:`forensics_core.faces.crop_faces`, the crop step training and benchmarks share. The flow for a
chunk of ``batch`` files (see ``docs/scan.md``)::

    load (thread pool, per-file deadline)       images decoded, videos only probed
      -> detect faces (one batched call per chunk; images downscaled to ``detect_max_side`` for detection)
      -> crop by the model's PreprocessSpec (5-point alignment or centre crop; whole-image fallback + ``no_face``)
      -> one batched model forward over every crop of the chunk
      -> evidence (file analyses in the thread pool, per-face Grad-CAM in the caller's thread)
      -> FileResult per file, in input order

While a chunk is detected and scored, the next chunk is already being loaded, so decoding hides behind the
model. Videos are streamed frame batch by frame batch (``forensics_core.media.iter_frames``) with a face tracker,
so memory is bounded by ``batch`` frames whatever the length of the clip.

**Aggregation** (documented in ``docs/scan-output.md``): an image's probability is the maximum over its faces (one
fake face makes a fake image). A video track's probability is the mean of the top half of its per-frame
probabilities (robust to a few glitchy frames, yet a manipulation present in half the frames dominates); the
file's probability is the maximum over tracks seen in at least ``min_track_faces`` sampled frames (tracks
shorter than that are spurious detections unless no longer track exists).

**Verdicts** are evidence, not proof: ``flagged`` means the calibrated probability reached the chosen threshold
policy's value (e.g. ``fpr1`` = the model's threshold for a 1% false-positive rate on its calibration set).
"""
