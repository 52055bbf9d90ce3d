"""``landmark2face``: a SPADE generator that paints a person's face from a landmark map and a few of their frames.

Two ideas from the literature, written small for this toolkit:

* GauGAN / SPADE (Park et al. 2019), on top of pix2pixHD (Wang et al. 2018): the generator's normalisation layers
  take their per-pixel scale and bias from the *conditioning map*, so the layout (where the eyes, mouth and face
  contour are) is not washed out by normalisation; a multi-scale patch discriminator with a feature-matching loss
  judges realism at several resolutions.
* Few-shot talking heads (Zakharov et al. 2019) and MarioNETte (Ha et al. 2020): the *identity* comes from an
  embedder run on K frames of the target person and averaged, so one network renders any person it is shown; the
  code modulates every normalisation layer channel-wise (like AdaIN) on top of SPADE's spatial modulation, and the
  averaged low-resolution feature map of the K shots is the generator's starting tensor.

Conditioning map (``cond_channels`` = 7 channels at the model's face size, all in the aligned crop):

* 5 Gaussian heat maps at the MTCNN landmarks (eyes, nose, mouth corners) and 1 outline of the face box. After
  alignment these points sit near the template; what stays is the residual the similarity fit cannot absorb:
  mouth opening/width, eye-line tilt, nose offset under head turn. Dense landmarks (a 468-point mesh) would be the
  textbook input, but the offline mesh model (mediapipe) requires numpy < 2, which this project cannot take.
* 1 dense *edge* map: Sobel magnitude of the aligned face, blurred. It carries what 5 points cannot (jaw line,
  lip contour, eyelids, wrinkles of an expression). Its trade-off is identity leak: edges of a different person
  also carry that person's face shape. Driving therefore defaults to ``relative`` motion: the *target's* own
  first-frame edge map and landmarks are moved by the driver's motion (dense optical flow from the driver's first
  frame to frame t, and landmark displacements), so the map the generator sees has the target's shape and the
  driver's expression. ``absolute`` feeds the driver's maps as they are (stronger motion, visible identity leak).

Training is self-supervised on real clips: reconstruct frame t of a clip from its own map and K other frames of the
same clip (L1 + feature matching + hinge GAN + a fixed random-feature pyramid loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forensics_core.errors import UsageError
from generators.layers import frozen, layer_outputs, optimizer_step
from generators.video.tracks import FaceTrack

N_LANDMARKS = 5
COND_CHANNELS = N_LANDMARKS + 2  # landmark heat maps, box outline, edge map


@dataclass
class Landmark2FaceConfig:
    size: int = 64  # aligned face size (power of two, >= 16)
    margin: float = 0.3
    width: int = 32  # base channel count of generator and discriminator
    id_dim: int = 128
    shots: int = 4  # K identity frames, averaged
    batch: int = 8
    lr: float = 2e-4
    steps: int = 2000
    n_scales: int = 2  # discriminator scales
    l1: float = 10.0
    feature_match: float = 10.0
    perceptual: float = 1.0
    adversarial: float = 1.0
    heat_sigma: float = 0.025  # landmark Gaussian sigma, fraction of the face size
    edge_sigma: float = 0.015  # edge-map blur, fraction of the face size (removes skin texture, keeps contours)
    seed: int = 0


# ------------------------------------------------------------------------------------------------ conditioning maps
@dataclass
class LandmarkTrack(FaceTrack):
    """A :class:`FaceTrack` that keeps the main face's 5 landmarks and box (frame coordinates) for every frame."""

    landmarks: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)

    def crop_landmarks(self, i: int) -> np.ndarray:
        return _affine(self.matrices[i], self.landmarks[i])

    def crop_box(self, i: int) -> np.ndarray:
        """The face box's 4 corners in the aligned crop (a rotated quadrilateral in general)."""
        x1, y1, x2, y2 = self.boxes[i]
        return _affine(self.matrices[i], np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64))


def _affine(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def track_landmarks(frames: list[np.ndarray], size: int, margin: float, detector=None, batch: int = 8,
                    source: str = "clip") -> LandmarkTrack:
    """Like :func:`generators.video.tracks.track_main_face`, keeping landmarks and boxes (gaps filled the same way).

    Raises a one-line :class:`UsageError` naming ``source`` when no frame has a face.
    """
    from forensics_core.faces.crops import canonical_landmarks, similarity_transform
    from forensics_core.faces.detectors import get_face_detector

    det = detector or get_face_detector("mtcnn")
    template = canonical_landmarks(size, margin)
    track = LandmarkTrack(size=size, margin=margin)
    last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    pending = 0
    for i in range(0, len(frames), batch):
        for faces in det.detect(frames[i : i + batch]):
            if faces:
                main = max(faces, key=lambda f: f.area)
                lm = np.asarray(main.landmarks, np.float64).reshape(N_LANDMARKS, 2)
                last = (similarity_transform(lm, template), lm, np.asarray(main.box, np.float64))
                for _ in range(pending + 1):
                    track.matrices.append(last[0])
                    track.landmarks.append(last[1])
                    track.boxes.append(last[2])
                track.detected.extend([False] * pending + [True])
                pending = 0
            elif last is None:
                pending += 1
            else:
                track.matrices.append(last[0])
                track.landmarks.append(last[1])
                track.boxes.append(last[2])
                track.detected.append(False)
    if last is None:
        raise UsageError(f"{source}: no face found in any of its {len(frames)} frames")
    return track


def edge_map(face: np.ndarray, sigma_px: float) -> np.ndarray:
    """(S, S) float32 in [0, 1]: blurred Sobel gradient magnitude, normalised by its 99th percentile so lighting
    and contrast of the clip do not change the map's scale."""
    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    mag = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3))
    if sigma_px > 0:
        mag = cv2.GaussianBlur(mag, (0, 0), sigma_px)
    scale = float(np.percentile(mag, 99)) + 1e-6
    return np.clip(mag / scale, 0.0, 1.0).astype(np.float32)


def landmark_heatmaps(points: np.ndarray, size: int, sigma_px: float) -> np.ndarray:
    """(5, S, S) float32: one Gaussian per landmark (peak 1 at the point)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    d2 = (xs[None] - pts[:, 0, None, None]) ** 2 + (ys[None] - pts[:, 1, None, None]) ** 2
    return np.exp(-0.5 * d2 / max(sigma_px, 0.5) ** 2).astype(np.float32)


def box_outline(corners: np.ndarray, size: int) -> np.ndarray:
    """(S, S) float32: the face box's outline (1 px, anti-aliased) in the crop: scale and framing of the face."""
    canvas = np.zeros((size, size), np.float32)
    pts = np.round(np.asarray(corners) * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], True, 1.0, 1, cv2.LINE_AA, shift=4)
    return canvas


def condition_map(face: np.ndarray | None, points: np.ndarray, box: np.ndarray, cfg: Landmark2FaceConfig,
                  edges: np.ndarray | None = None) -> np.ndarray:
    """(COND_CHANNELS, S, S) float32 in [0, 1]: landmark heat maps, box outline, edge map.

    ``edges`` overrides the edge map computed from ``face`` (used by relative driving, where the target's edge map
    is warped by the driver's motion)."""
    s = cfg.size
    if edges is None:
        if face is None:
            raise ValueError("condition_map needs a face or an edge map")
        edges = edge_map(face, cfg.edge_sigma * s)
    heat = landmark_heatmaps(points, s, cfg.heat_sigma * s)
    return np.concatenate([heat, box_outline(box, s)[None], edges[None]], 0)


# ------------------------------------------------------------------------------------------------------- networks
class SPADE(nn.Module):
    """Parameter-free instance norm, then scale and bias from the map (spatial) plus the identity code (per channel).

    ``gamma`` enters as ``1 + gamma`` so an untrained layer starts as a plain normalisation.
    """

    def __init__(self, channels: int, cond_channels: int, id_dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(cond_channels, hidden, 3, padding=1), nn.ReLU(inplace=True))
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)
        self.id_affine = nn.Linear(id_dim, 2 * channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, ident: torch.Tensor) -> torch.Tensor:
        cond = F.interpolate(cond, size=x.shape[2:], mode="bilinear", align_corners=False)
        h = self.shared(cond)
        g_id, b_id = self.id_affine(ident)[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1 + self.gamma(h) + g_id) + self.beta(h) + b_id


class SPADEResBlock(nn.Module):
    """SPADE's residual block: (SPADE, LeakyReLU, conv) twice; a learned (SPADE + 1x1) shortcut when widths differ."""

    def __init__(self, cin: int, cout: int, cond_channels: int, id_dim: int) -> None:
        super().__init__()
        mid = min(cin, cout)
        self.norm0 = SPADE(cin, cond_channels, id_dim)
        self.conv0 = nn.Conv2d(cin, mid, 3, padding=1)
        self.norm1 = SPADE(mid, cond_channels, id_dim)
        self.conv1 = nn.Conv2d(mid, cout, 3, padding=1)
        self.learned_skip = cin != cout
        if self.learned_skip:
            self.norm_s = SPADE(cin, cond_channels, id_dim)
            self.conv_s = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, ident: torch.Tensor) -> torch.Tensor:
        skip = self.conv_s(self.norm_s(x, cond, ident)) if self.learned_skip else x
        h = self.conv0(F.leaky_relu(self.norm0(x, cond, ident), 0.2))
        h = self.conv1(F.leaky_relu(self.norm1(h, cond, ident), 0.2))
        return skip + h


def _n_up(size: int) -> int:
    if size < 16 or size & (size - 1):
        raise UsageError(f"landmark2face size {size}: must be a power of two >= 16")
    return int(np.log2(size)) - 2  # the generator starts at 4 x 4


class IdentityEncoder(nn.Module):
    """Embeds each of K shots to a 4x4 feature map and a global code; both are averaged over the shots, so the
    result does not depend on their order or number (the few-shot embedder of Zakharov et al.)."""

    def __init__(self, cfg: Landmark2FaceConfig, out_channels: int) -> None:
        super().__init__()
        n = _n_up(cfg.size)
        chans = [3] + [min(cfg.width * 2 ** (i + 1), cfg.width * 8) for i in range(n)]
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.to_map = nn.Conv2d(chans[-1], out_channels, 3, padding=1)
        self.to_code = nn.Linear(chans[-1], cfg.id_dim)

    def forward(self, shots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``shots`` (N, K, 3, S, S) -> (feature map (N, C, 4, 4), identity code (N, id_dim))."""
        n, k = shots.shape[:2]
        h = self.convs(shots.flatten(0, 1))
        fmap = self.to_map(h).view(n, k, -1, *h.shape[2:]).mean(1)
        code = self.to_code(h.mean((2, 3))).view(n, k, -1).mean(1)
        return fmap, code


class Landmark2FaceGenerator(nn.Module):
    def __init__(self, cfg: Landmark2FaceConfig) -> None:
        super().__init__()
        n = _n_up(cfg.size)
        chans = [min(cfg.width * 2 ** (n - i), cfg.width * 8) for i in range(n + 1)]
        self.identity = IdentityEncoder(cfg, chans[0])
        self.blocks = nn.ModuleList(
            SPADEResBlock(chans[i], chans[i + 1], COND_CHANNELS, cfg.id_dim) for i in range(n)
        )
        self.out = SPADEResBlock(chans[-1], chans[-1], COND_CHANNELS, cfg.id_dim)
        self.rgb = nn.Conv2d(chans[-1], 3, 3, padding=1)

    def embed(self, shots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.identity(shots)

    def render(self, cond: torch.Tensor, identity: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        fmap, code = identity
        h = fmap.expand(cond.shape[0], -1, -1, -1) if fmap.shape[0] == 1 else fmap
        code = code.expand(cond.shape[0], -1) if code.shape[0] == 1 else code
        for blk in self.blocks:
            h = F.interpolate(blk(h, cond, code), scale_factor=2, mode="nearest")
        h = self.out(h, cond, code)
        return torch.tanh(self.rgb(F.leaky_relu(h, 0.2)))

    def forward(self, cond: torch.Tensor, shots: torch.Tensor) -> torch.Tensor:
        return self.render(cond, self.embed(shots))


class PatchDiscriminator(nn.Module):
    """pix2pixHD's conditional PatchGAN (image + map in), returning every layer's output for feature matching."""

    def __init__(self, cfg: Landmark2FaceConfig, n_layers: int = 3) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        w = cfg.width
        chans = [3 + COND_CHANNELS] + [min(w * 2**i, w * 8) for i in range(n_layers)]
        self.layers = nn.ModuleList()
        for i in range(n_layers):
            stride = 2 if i < n_layers - 1 else 1
            self.layers.append(nn.Sequential(sn(nn.Conv2d(chans[i], chans[i + 1], 4, stride, 1)),
                                             nn.LeakyReLU(0.2, inplace=True)))
        self.layers.append(sn(nn.Conv2d(chans[-1], 1, 3, 1, 1)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return layer_outputs(self.layers, x)


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, cfg: Landmark2FaceConfig) -> None:
        super().__init__()
        self.discs = nn.ModuleList(PatchDiscriminator(cfg) for _ in range(cfg.n_scales))

    def forward(self, image: torch.Tensor, cond: torch.Tensor) -> list[list[torch.Tensor]]:
        x = torch.cat([image, cond], 1)
        outs = []
        for i, d in enumerate(self.discs):
            outs.append(d(x if i == 0 else F.avg_pool2d(x, 2**i)))
        return outs


class Landmark2FaceModel(nn.Module):
    """Generator + multi-scale discriminator in one module, so one safetensors checkpoint holds the whole run."""

    def __init__(self, cfg: Landmark2FaceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.gen = Landmark2FaceGenerator(cfg)
        self.disc = MultiScaleDiscriminator(cfg)


# ---------------------------------------------------------------------------------------------------------- losses
def generator_losses(model: Landmark2FaceModel, feats: nn.Module, cond: torch.Tensor, shots: torch.Tensor,
                     target: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """pix2pixHD's generator objective (hinge GAN + discriminator feature matching) plus L1 and the fixed
    random-feature pyramid (the perceptual term, without downloaded VGG weights). Returns (losses, fake)."""
    cfg = model.cfg
    fake = model.gen(cond, shots)
    d_fake = model.disc(fake, cond)
    with torch.no_grad():
        d_real = model.disc(target, cond)
    adv = sum(-o[-1].mean() for o in d_fake) / len(d_fake)
    fm = sum(F.l1_loss(f, r) for of, orl in zip(d_fake, d_real) for f, r in zip(of[:-1], orl[:-1]))
    fm = fm / max(1, len(d_fake))
    losses = {
        "l1": cfg.l1 * F.l1_loss(fake, target),
        "perceptual": cfg.perceptual * feats.loss(fake, target),
        "g_adv": cfg.adversarial * adv,
        "feature_match": cfg.feature_match * fm,
    }
    losses["g_total"] = sum(losses.values())
    return losses, fake


def discriminator_loss(model: Landmark2FaceModel, cond: torch.Tensor, fake: torch.Tensor,
                       target: torch.Tensor) -> torch.Tensor:
    """Hinge loss (as in SPADE) averaged over scales."""
    real = model.disc(target, cond)
    fake_o = model.disc(fake.detach(), cond)
    per_scale = [F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake_o)]
    return sum(per_scale) / len(per_scale)


def train_step(model: Landmark2FaceModel, feats: nn.Module, opt: torch.optim.Optimizer, cond: torch.Tensor,
               shots: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """One generator update then one discriminator update.

    One Adam holds both networks' parameters (so the run's single checkpoint captures both); each update only
    steps the network whose gradients exist, because gradients are reset to ``None`` in between and Adam skips
    parameters without one.
    """
    with frozen(model.disc):
        losses, fake = generator_losses(model, feats, cond, shots, target)
        optimizer_step(opt, losses["g_total"])
    d_loss = discriminator_loss(model, cond, fake, target)
    optimizer_step(opt, d_loss)
    opt.zero_grad(set_to_none=True)
    return {**{k: float(v.detach()) for k, v in losses.items()}, "d_hinge": float(d_loss.detach())}


# ----------------------------------------------------------------------------------------------------- clip inputs
@dataclass
class ClipMaps:
    """A clip's aligned faces (T, S, S, 3) uint8 and conditioning maps (T, C, S, S) float32, with its track."""

    faces: np.ndarray
    maps: np.ndarray
    track: LandmarkTrack


def clip_maps(frames: list[np.ndarray], cfg: Landmark2FaceConfig, detector=None, source: str = "clip") -> ClipMaps:
    from generators.video.tracks import warp_to_crop

    track = track_landmarks(frames, cfg.size, cfg.margin, detector, source=source)
    faces = np.stack([warp_to_crop(f, m, cfg.size) for f, m in zip(frames, track.matrices)])
    maps = np.stack([condition_map(faces[i], track.crop_landmarks(i), track.crop_box(i), cfg)
                     for i in range(len(faces))])
    return ClipMaps(faces, maps, track)


def driving_maps(target: ClipMaps, driving: ClipMaps, cfg: Landmark2FaceConfig, n: int,
                 relative: bool = True, smooth: float = 1.0) -> np.ndarray:
    """(n, C, S, S) maps that carry the driver's motion.

    ``relative``: the target's first-frame landmarks / box move by the driver's displacement since its first frame,
    and the target's first-frame edge map is warped by the driver's dense flow (frame 0 -> t), so the face shape
    stays the target's. ``absolute``: the driver's own maps (its face shape leaks into the result).
    """
    if not relative:
        return driving.maps[:n]
    from generators.video.warp import apply_flow, backward_flow

    t_lm, t_box = target.track.crop_landmarks(0), target.track.crop_box(0)
    d_lm0, d_box0 = driving.track.crop_landmarks(0), driving.track.crop_box(0)
    t_edges = target.maps[0, -1]
    out = []
    for i in range(n):
        flow = backward_flow(driving.faces[0], driving.faces[i], smooth * cfg.size / 64)
        edges = apply_flow(t_edges, flow)
        lm = t_lm + (driving.track.crop_landmarks(i) - d_lm0)
        box = t_box + (driving.track.crop_box(i) - d_box0)
        out.append(condition_map(None, lm, box, cfg, edges=edges))
    return np.stack(out)


def pick_shots(n_frames: int, k: int) -> np.ndarray:
    """K frame indices spread evenly over the clip: varied pose and expression make a better identity average."""
    return np.linspace(0, n_frames - 1, min(k, n_frames)).round().astype(int)
