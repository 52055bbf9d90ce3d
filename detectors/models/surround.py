"""``surround``: is the face consistent with its surround? Hand-made inconsistency features + gradient-boosted trees.

A swapped or spliced face is a region pasted into a photo whose camera, compression and noise history it does not
share. :func:`detectors.inconsistency.features.crop_features` measures that on the model crop (the face at the crop
template, its surround in the margin): face-minus-surround noise level and residual spectrum, part-minus-skin
contrasts (eye / nose / mouth splices), co-occurrence distances, colour and sharpness steps across rings of the
face ellipse, JPEG grid agreement. A small gradient-boosted tree ensemble (scikit-learn's
``GradientBoostingClassifier``, fitted in CPU minutes) classifies the vector.

Training needs reals only: ``post_fit`` makes positives from the training reals with
:mod:`detectors.manipulate` (self- and cross-blends through face and part masks, donors with their own histories,
colour and sharpness jitter) and gives reals and edits alike one more delivery history; validation is the val
reals against one fixed edit of each (:meth:`SurroundDetector.validation_views`), so early stopping, calibration and
the presets measure this task, not how the features happen to rank GAN faces. Run it through the one loop::

    forensics detector train surround --data DS --val DS --exclude-family stylegan2 --delivery halving --threads 1

The defaults (128 px ``native`` crop, margin 0.3, clamped edges) are the shipped default's input spec, so
``forensics detector fuse default RUN/model`` can join the two: the artifact model for generated faces, this one
for pasted ones.

Why trees and not a CNN: the ``blend`` CNN learnt the self-blends and nothing that transferred to real swaps;
contrasts measured against the face's own surround keep their meaning on a camera no training set held, and trees
on ~90 such numbers train in minutes on a CPU. The trees are stored as plain tensors
(:class:`BoostedTrees`), so the model file stays safetensors and loads without unpickling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from detectors.base import ArrayData, Detector, DetectorConfig
from detectors.inconsistency.features import FEATURES_VERSION
from detectors.registry import register_detector


class BoostedTrees:
    """Gradient-boosted depth-limited regression trees on log-loss, as flat arrays (scikit-learn contract:
    ``fit`` returns self, learned attributes end in ``_``).

    ``feature_``, ``threshold_``, ``left_``, ``right_``, ``value_`` are ``(n_trees, n_nodes)``; a leaf points to
    itself, so :meth:`decision_function` walks every tree ``depth`` steps at once. Unused trees (early stopping)
    are single leaves of value 0."""

    def __init__(
        self, n_trees: int = 300, depth: int = 3, learning_rate: float = 0.05, subsample: float = 0.8,
        max_features: float = 0.5, seed: int = 0,
    ) -> None:  # fmt: skip
        self.n_trees = n_trees
        self.max_features = max_features
        self.depth = depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.seed = seed

    @property
    def n_nodes(self) -> int:
        return 2 ** (self.depth + 1) - 1

    def fit(self, X: np.ndarray, y: np.ndarray) -> BoostedTrees:
        from sklearn.ensemble import GradientBoostingClassifier

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(int)
        # early stopping on a tenth of the rows once there are enough of them to hold out
        stop = {"validation_fraction": 0.1, "n_iter_no_change": 30} if len(y) >= 200 else {}
        gb = GradientBoostingClassifier(
            n_estimators=self.n_trees, max_depth=self.depth, learning_rate=self.learning_rate,
            subsample=self.subsample, max_features=self.max_features, random_state=self.seed, **stop,
        ).fit(X, y)  # fmt: skip
        t, m = self.n_trees, self.n_nodes
        self.feature_ = np.zeros((t, m), np.int64)
        self.threshold_ = np.full((t, m), np.inf)
        self.left_ = np.tile(np.arange(m, dtype=np.int64), (t, 1))
        self.right_ = self.left_.copy()
        self.value_ = np.zeros((t, m))
        for i, est in enumerate(gb.estimators_[:, 0]):
            tr = est.tree_
            k = tr.node_count
            leaf = tr.children_left < 0
            self.feature_[i, :k] = np.where(leaf, 0, tr.feature)
            self.threshold_[i, :k] = np.where(leaf, np.inf, tr.threshold)
            self.left_[i, :k] = np.where(leaf, np.arange(k), tr.children_left)
            self.right_[i, :k] = np.where(leaf, np.arange(k), tr.children_right)
            self.value_[i, :k] = self.learning_rate * tr.value[:, 0, 0]
        # the constant the trees start from (the log-odds of the prior of the rows it was fitted on: early
        # stopping holds some out), read through the public API: the decision minus the trees' sum
        trees = sum(est.predict(X[:1])[0] for est in gb.estimators_[:, 0])
        self.init_ = float(gb.decision_function(X[:1])[0] - self.learning_rate * trees)
        self.n_trees_used_ = int(gb.n_estimators_)
        self.feature_importances_ = gb.feature_importances_
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return tree_logits(
            torch.from_numpy(np.asarray(X, np.float32)), *(torch.from_numpy(a) for a in self.arrays()), self.depth
        ).numpy()

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.feature_, self.threshold_, self.left_, self.right_, self.value_, np.array([self.init_])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p, p], axis=1)


def tree_logits(
    X: torch.Tensor, feature: torch.Tensor, threshold: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
    value: torch.Tensor, init: torch.Tensor, depth: int,
) -> torch.Tensor:  # fmt: skip
    """``(N,)`` log-odds of :class:`BoostedTrees` arrays for features ``X`` ``(N, F)``: every tree walked ``depth``
    steps (``x <= threshold`` goes left, as scikit-learn's trees decide on float32 inputs)."""
    n, t = X.shape[0], feature.shape[0]
    x = X.float().double()
    trees = torch.arange(t, device=X.device).expand(n, t)
    node = torch.zeros(n, t, dtype=torch.long, device=X.device)
    for _ in range(depth):
        f = feature[trees, node]
        go_left = x.gather(1, f) <= threshold[trees, node]
        node = torch.where(go_left, left[trees, node], right[trees, node])
    return value[trees, node].sum(dim=1) + init.double()


@dataclass
class SurroundConfig(DetectorConfig):
    res: int = 128
    crop: str = "native"
    margin: float = 0.3
    n_trees: int = 300
    depth: int = 3
    learning_rate: float = 0.05
    subsample: float = 0.8
    #: share of the features each split may choose from (decorrelates the trees: no single contrast carries all)
    max_features: float = 0.5
    #: the length of :func:`detectors.inconsistency.features.crop_features` the trees were fitted on (set by
    #: ``post_fit``): a model file whose count differs from the code's is refused instead of reading the wrong columns
    n_features: int = 0
    #: :data:`detectors.inconsistency.features.FEATURES_VERSION` when fitted (files before the key: 1)
    features: int = 1
    #: find the face in the crop (O-Net, ~10 ms) instead of assuming it at the template: ``native`` windows are
    #: clamped to tightly framed photos, whose faces then fill more of the crop than the template says
    locate: bool = True
    #: rounds of (every post-fit real, one edit of it), each crop with its own delivery after the edit
    views: int = 2
    #: share of edits whose donor is another real (a swap) rather than the face itself (a self-blend)
    p_cross: float = 0.5
    #: share of edits through eye / nose / mouth masks (a splice) rather than a face mask
    p_parts: float = 0.35
    #: delivery preset of the donors' own histories and of the history every crop gets after the edit
    post_delivery: str = "mixed"
    #: labelled fakes of the training data as extra positives (off: GAN faces are consistent with their surround,
    #: they are the artifact model's job)
    use_fakes: bool = False


@register_detector(
    "surround",
    description="Face-vs-surround inconsistency features (noise, spectrum, colour, co-occurrence, JPEG grid) + "
    "boosted trees; trained on self-/cross-blends of reals (CPU).",
    tags=("blending", "classical", "image"),
)
class SurroundDetector(Detector):
    """No gradient training: ``post_fit`` fits :class:`BoostedTrees` on features of reals and their edits."""

    Config = SurroundConfig
    needs_fakes = False

    def __init__(self, cfg: SurroundConfig) -> None:
        super().__init__(cfg)
        t, m = cfg.n_trees, 2 ** (cfg.depth + 1) - 1
        self.register_buffer("feature", torch.zeros(t, m, dtype=torch.long))
        self.register_buffer("threshold", torch.full((t, m), float("inf"), dtype=torch.float64))
        self.register_buffer("left", torch.arange(m).repeat(t, 1))
        self.register_buffer("right", torch.arange(m).repeat(t, 1))
        self.register_buffer("value", torch.zeros(t, m, dtype=torch.float64))
        self.register_buffer("init", torch.zeros(1, dtype=torch.float64))

    # -- inference ----------------------------------------------------------------------------------------------
    def _pixels(self, x: torch.Tensor) -> np.ndarray:
        """Normalised ``(N, 3, S, S)`` -> RGB ``(N, S, S, 3)`` in 0..255 (float32)."""
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x.detach().float() * std + mean) * 255.0).permute(0, 2, 3, 1).cpu().numpy()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, F)`` inconsistency features of normalised crops
        (:func:`detectors.inconsistency.features.crop_features`)."""
        from detectors.inconsistency.features import crop_features

        px, c = self._pixels(x), self.cfg
        feats = np.stack([crop_features(p, c.margin, c.locate) for p in px]) if len(px) else np.zeros((0, 1))
        return torch.from_numpy(feats.reshape(len(px), -1)).to(x.device)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).float()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        if (self.cfg.n_features and f.shape[0] and f.shape[1] != self.cfg.n_features) or (
            self.cfg.features != FEATURES_VERSION
        ):
            from forensics_core.errors import ModelFileError

            raise ModelFileError(
                f"surround: this model was fitted on {self.cfg.n_features} features of version {self.cfg.features}, "
                f"the code computes {f.shape[1]} of version {FEATURES_VERSION}: retrain it "
                "(detectors.inconsistency.features.crop_features changed)"
            )
        z = tree_logits(f, self.feature, self.threshold, self.left, self.right, self.value, self.init, self.cfg.depth)
        return z.float()

    def explain(self, x: torch.Tensor) -> np.ndarray:
        """Where the crop disagrees with its surround (:func:`detectors.inconsistency.anomaly.anomaly_maps` on the crop
        template's face, combined), instead of gradients that trees do not have."""
        from detectors.inconsistency.anomaly import combined_map
        from detectors.inconsistency.locate import locate_landmarks

        px = self._pixels(x)
        if not len(px):
            return np.zeros((0, *x.shape[-2:]), np.float32)
        return np.stack([combined_map(p, locate_landmarks(p, self.cfg.margin)[0]) for p in px])

    # -- training -----------------------------------------------------------------------------------------------
    def _manipulation(self):
        from detectors.manipulate import ManipulationConfig

        c = self.cfg
        return ManipulationConfig(p_cross=c.p_cross, p_parts=c.p_parts, delivery=c.post_delivery, locate=c.locate)

    def validation_views(self, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Val reals and one fixed edit of each, every crop with one fixed delivery after the edit (seeded); the
        labelled fakes only when they are training positives too (``use_fakes``)."""
        from detectors.manipulate import labelled_views

        reals = x[y == 0]
        if not len(reals):
            return x, y
        xs, ys = labelled_views(reals, self.cfg.margin, np.random.default_rng((seed, 13)), self._manipulation())
        if self.cfg.use_fakes:
            xs, ys = np.concatenate([xs, x[y == 1]]), np.concatenate([ys, y[y == 1]])
        return xs, ys

    def post_fit(self, train: ArrayData, val: ArrayData) -> None:
        from detectors.manipulate import labelled_views

        y = train.y.numpy()
        reals = np.clip(np.rint(self._pixels(train.x[torch.from_numpy(y == 0)])), 0, 255).astype(np.uint8)
        rng = np.random.default_rng((self.cfg.seed, 17))
        xs, ys = labelled_views(reals, self.cfg.margin, rng, self._manipulation(), self.cfg.views)
        if self.cfg.use_fakes and (y == 1).any():
            fakes = np.clip(np.rint(self._pixels(train.x[torch.from_numpy(y == 1)])), 0, 255).astype(np.uint8)
            xs, ys = np.concatenate([xs, fakes]), np.concatenate([ys, np.ones(len(fakes), ys.dtype)])
        from detectors.inconsistency.features import crop_features

        feats = np.stack([crop_features(im, self.cfg.margin, self.cfg.locate) for im in xs])
        c = self.cfg
        trees = BoostedTrees(c.n_trees, c.depth, c.learning_rate, c.subsample, c.max_features, c.seed).fit(feats, ys)
        self.cfg.n_features = int(feats.shape[1])
        self.cfg.features = FEATURES_VERSION
        for name, arr in zip(("feature", "threshold", "left", "right", "value", "init"), trees.arrays()):
            getattr(self, name).copy_(torch.from_numpy(np.asarray(arr)))
