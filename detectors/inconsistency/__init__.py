"""Face-versus-surround inconsistency: what a pasted face does not share with the photo it was pasted into.

A swapped or spliced face was photographed, resampled, colour-corrected and often compressed somewhere else before
it was blended into its target. Its camera noise, its sharpness, its colour and its compression history therefore
differ from the surround's, and the blend leaves a boundary where they change. None of this needs a GPU, and each
statistic is something an analyst can point at. This package computes, from one face's 5 landmarks:

- **regions** (:mod:`~detectors.inconsistency.regions`; :mod:`~detectors.inconsistency.locate` finds the face in a
  model crop): an elliptical face frame (``FaceGeometry``) whose normalised radius ``rho`` splits the image into
  the inner face (``core``), the ``band`` where swap seams lie, and the ``surround``; boxes for the eyes, nose and
  mouth (what splices replace) and the remaining facial ``skin`` they are compared with;
- **maps** (:mod:`~detectors.inconsistency.maps`): the noise residual (image minus its 3x3 median), its local level,
  three difference-of-Gaussian bands of the luma (the residual spectrum: a resampled or denoised face loses the top
  band first), colour, the co-occurrences of the quantised third-order residual (the Splicebuster statistic,
  Cozzolino et al. 2015) and the 8x8 JPEG block grid (strength and phase);
- **features** (:mod:`~detectors.inconsistency.features`, ``crop_features``): per-region statistics of those maps
  and their face/surround contrasts, boundary profiles across rings of ``rho``: the vector the ``surround``
  detector classifies;
- **anomaly maps** (:mod:`~detectors.inconsistency.anomaly`, ``anomaly_maps``) on a whole photo, each measured
  against the face's own surround, which the evidence analyses show and ``localise`` turns into a mask.

Why a model of the surround rather than of "real faces": the surround is the one reference that shares the
photo's camera and delivery, so a contrast with it stays meaningful on a photo from a camera no training set held.
"""
