"""Detector training: one loop for every registered detector, single process or ``torchrun`` DDP.

Shape of a run (StyleGAN2-ADA style): options resolve into :class:`TrainOptions`, which is written to
``training_options.json`` in a numbered run dir (``runs/00003-npr-r128``) before any work; metrics are appended
to ``metrics.jsonl``; ``checkpoint.safetensors`` + ``checkpoint.json`` (weights, optimiser tensors, epoch, best AUC)
let ``--resume RUN`` continue; the final calibrated model is written to ``RUN/model/`` (see
:mod:`detectors.modelfile`).

Modules: :mod:`~detectors.train.options` (``TrainOptions``), :mod:`~detectors.train.views` (what a step sees),
:mod:`~detectors.train.loop` (``train``), :mod:`~detectors.train.finalize` (calibration and the model file).

What the loop does for generalisation:
- family-balanced sampling (each class half the mass, split equally between its families/generators), so one big
  generator dataset does not become "the" fake;
- the same random degradation chains (:mod:`detectors.augment`) on reals and fakes;
- early stopping on validation AUC (ranking), then calibration on a held-out half of validation, with thresholds
  picked on that half's reals and the card's val metrics measured on the other half.
"""
