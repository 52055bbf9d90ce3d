"""Latent diffusion, written from the papers (DDPM, DDIM, LDM, SDEdit, RePaint): a KL autoencoder, a latent UNet,
noise schedules and the families ``ldm-ae``, ``ae-recon``, ``ldm``, ``sdedit`` and ``ldm-inpaint``.

Importing this package registers the families (``generators.families`` imports it).
"""

from generators.diffusion import families  # noqa: F401
