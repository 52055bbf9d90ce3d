"""Built-in detectors; importing this package registers them (the registry imports it on first lookup)."""

from detectors.models import (  # noqa: F401
    blend,
    ensemble,
    gan_disc,
    npr,
    spectrum,
    surround,
    timm_backbone,
    video,
)
