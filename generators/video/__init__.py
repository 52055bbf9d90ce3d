"""Fake talking-head videos from real clips: expression warp, face swap and first-order-motion reenactment.

Each method lives in its own module and registers in :data:`generators.video.methods.VIDEO_METHODS`; the dataset
writer (:mod:`generators.video.dataset`) turns any of them into a labelled fake-video dataset with real twins.
"""
