"""Latent diffusion, written from the papers (DDPM, DDIM, LDM, SDEdit, RePaint): a KL autoencoder, a latent UNet,
noise schedules and the families ``ldm-ae``, ``ae-recon``, ``ldm``, ``sdedit`` and ``ldm-inpaint``.

The families share one implementation on purpose: ``configs`` (options, presets, checks), ``weights`` (reusing a
trained run), ``ae_training`` (the autoencoder step ``ldm-ae``, ``ae-recon`` and ``ldm``'s first phase share),
``ae_families`` (``ldm-ae`` and the real/reconstruction families) and ``ldm_families`` (``ldm``, ``sdedit``,
``ldm-inpaint``).

Importing this package registers the families (``generators.families`` imports it).
"""

from generators.diffusion import ae_families, ldm_families  # noqa: F401
