"""The paper's CNN, written as pure functions of a parameter dict so MAML can differentiate through updates.

Network (AGILE, Yuan et al.): 4 x [3x3 conv, 32 filters -> batch norm -> ReLU -> 2x2 max-pool] -> dense to 2.
Batch norm uses *tissue statistics*: per-layer means/variances estimated once on unlabelled cells of the
section at hand (`estimate_stats`), not on the labelled batch. Support sets hold 2-16 cells, whose batch
statistics would be noise; the same rule in meta-training (stats from an unlabelled sample of the task's
tissue) and in use (stats from the user's section) keeps the two consistent and re-estimates the
normalisation on tissue the model never saw.
MC dropout (rate 0.1, always on, train and test) sits before the dense layer, so T stochastic passes cost one
trunk pass.
Optionally the dense layer also reads each channel's mean at the centre cell, standardised or whitened with the
same tissue statistics: in `centre_rings` concentric rings of `centre_radius` (nucleus core, then its rim and the
soma around it; the bundled model), or inside the cell's own segmented nucleus (`centre_block = "nucleus"`; the
patch then carries that mask as one plane after the marker channels, which the convolutions do not read), and with
`ring` also in a band of that width around the nucleus (membrane and soma markers).

Two encoders. "joint" (the paper) convolves a fixed panel's channels together. "per_channel" runs one small CNN,
with shared weights, over each marker channel (with the nucleus mask and a nuclear-stain flag as two more planes):
a cell is the set of its channels' embeddings, so the model reads any panel of any size in any order. The dense
layer holds one shared weight row per channel; the support's prototypes (computed per channel) and the step then
say which channels matter for the new type (`head_weight`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from napari_agile.errors import AgileInputError
from napari_agile.io.cells import median_diameter

Params = dict[str, torch.Tensor]


#: Options of studies that lost, removed from ModelConfig, and the value every shipped model was made with: recipes
#: and model files that still name them are read as long as they hold it (docs/method.md keeps the numbers).
RETIRED: dict[str, object] = {"dropout_placement": "head", "mask_input": False}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and input contract of a model; saved inside every model file."""

    channels: tuple[str, ...]
    patch_size: int = 100  # pixels cut around each nucleus centre
    bin: int = 2  # average-pool the patch by this factor before the network (100 -> 50 px)
    width: int = 32
    blocks: int = 4
    dropout: float = 0.1
    n_classes: int = 2
    head_init: str = "prototypes"  # adaptation starts the dense layer from "meta" weights only (the paper),
    # adds the support's class "prototypes" (Proto-MAML), or takes one regularised "newton" step of the head's
    # logistic loss on the support, which weighs each feature by how well it separates the labels, so a wide
    # panel's unrelated channels stop drowning the type's markers (docs/method.md)
    head_ridge: float = 0.3  # "newton": the step's ridge, relative to the support's mean feature variance
    head_select: int = 0  # "newton", per channel: solve the step this many more times, each time giving every
    # channel's features a prior weight in proportion to the size of its weights in the solve before (reweighted
    # ridge, a group lasso's fixed point), so the answers pick the few markers that tell the type (docs/method.md)
    centre_radius: int = 0  # > 0: the dense layer also sees every channel's mean inside this radius (patch pixels)
    # around the centre, standardised on the tissue: the centre cell's marker levels, which the pooled trunk
    # blurs with its neighbours' (docs/method.md); 0 is the paper's network
    centre_whiten: bool = False  # decorrelate the centre block with the tissue's channel covariance (ZCA), not
    # only scale each channel: a shared nuclear stain or bleed-through then counts once in the prototypes' distance
    centre_rings: int = 1  # split the centre disk into this many rings of equal width, each ring's channel means
    # normalised on their own: a marker in the nucleus and one on its rim (membrane, soma) read apart
    centre_block: str = "rings"  # "rings": the means above; "nucleus": each channel's mean inside the centre cell's
    # segmented nucleus, wherever and however large it is (cells need a label image; centre_radius is then unused)
    centre_sqrt: bool = False  # the square root of each channel mean before it is normalised: expression is
    # log-normal, so in linear units a marker's positive cells spread wider than its negatives, which a
    # prototype's distance does not model; the root evens the spreads (docs/method.md)
    encoder: str = "joint"  # "joint": one CNN over the fixed panel `channels` (the paper); "per_channel": one shared
    # CNN per marker channel, any panel (channels then name the panel it is bound to, empty in a model file)
    nuclear: tuple[bool, ...] = ()  # per_channel: which of `channels` stain every nucleus (a flag plane says so)
    trunk_pool: bool = False  # average the last block over its pixels: each input's trunk embedding is `width`
    # numbers, not width x side x side (a per-channel model's features then stay few: 16 labels fit them)
    trunk_bin: int = 1  # the convolutions read the input average-pooled once more by this factor (the centre block
    # still reads the finer input): a per-channel trunk over 40 channels costs 4x less at 2
    nucleus_px: float = 0.0  # median nucleus diameter (px) of the tissue the model was trained on: a section whose
    # nuclei are more than 25% smaller or larger is cut at the scale that makes them this size (0: never rescale)
    ring: int = 0  # > 0 with centre_block "nucleus": the block also reads each channel's mean in a band this many
    # patch pixels wide around the nucleus (membrane, soma), a second part normalised on its own

    @classmethod
    def from_dict(cls, values: Mapping[str, object], where: str) -> ModelConfig:
        """The config a recipe or model file gives; an option of a study that lost (RETIRED) is accepted at the
        value every shipped model used, and named in a clear error at any other."""
        kept: dict[str, Any] = dict(values)  # checked against the fields by check_types and the class itself
        for key, used in RETIRED.items():
            if key in kept and kept.pop(key) != used:
                raise AgileInputError(
                    f"{where}: {key} = {values[key]!r} is no longer an option (its study lost, docs/method.md); "
                    "remove it (the variant's code is in git history, commit ea02dc38)."
                )
        return cls(**kept)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "nuclear", tuple(bool(f) for f in self.nuclear))
        if self.encoder not in ("joint", "per_channel"):
            raise AgileInputError("encoder must be 'joint' or 'per_channel'")
        if self.encoder == "per_channel" and self.centre_block != "nucleus":
            raise AgileInputError("encoder 'per_channel' needs centre_block 'nucleus' (it reads the nucleus mask)")
        if self.nuclear and len(self.nuclear) != len(self.channels):
            raise AgileInputError("nuclear holds one flag per channel")
        if self.ring and (self.centre_block != "nucleus" or self.ring < self.bin):
            raise AgileInputError("ring needs centre_block 'nucleus' and a width of at least `bin` pixels")
        if self.centre_block not in ("rings", "nucleus"):
            raise AgileInputError("centre_block must be 'rings' or 'nucleus'")
        if self.head_init not in ("meta", "prototypes", "newton"):
            raise AgileInputError("head_init must be 'meta', 'prototypes' or 'newton'")
        if not self.head_ridge > 0:
            raise AgileInputError("head_ridge must be above 0")
        if self.head_select < 0 or self.head_select and not (self.per_channel and self.head_init == "newton"):
            raise AgileInputError("head_select needs encoder 'per_channel' and head_init 'newton' (0 turns it off)")
        if self.patch_size % self.bin:
            raise AgileInputError("patch_size must be a multiple of bin")
        if self.trunk_bin < 1 or (self.input_size // self.trunk_bin) >> self.blocks < 1:
            raise AgileInputError("trunk_bin must be at least 1 and leave the trunk's last block at least 1 px")
        if not 0 <= self.centre_radius < self.patch_size // 2:
            raise AgileInputError("centre_radius must be between 0 and half the patch size")
        if self.centre_rings < 1 or self.centre_radius and self.centre_radius / self.centre_rings < self.bin:
            raise AgileInputError("centre_rings must be at least 1, and each ring at least `bin` pixels wide")

    @property
    def input_size(self) -> int:
        """Side of the binned patch the network sees."""
        return self.patch_size // self.bin

    @property
    def per_channel(self) -> bool:
        """Whether one shared CNN reads each channel (any panel) rather than one CNN the whole fixed panel."""
        return self.encoder == "per_channel"

    def for_panel(self, channels: Sequence[str], nuclear: Sequence[bool]) -> ModelConfig:
        """A per-channel model's config bound to one panel: its channel names and which of them are nuclear."""
        return replace(self, channels=tuple(channels), nuclear=tuple(nuclear))

    @property
    def channel_trunk(self) -> int:
        """Length of the convolutional output for one input (the panel, or one channel of it)."""
        side = self.input_size // self.trunk_bin
        for _ in range(self.blocks):
            side //= 2
        return self.width * (1 if self.trunk_pool else side * side)

    @property
    def trunk_size(self) -> int:
        """Length of the flattened convolutional output."""
        return self.channel_trunk * (len(self.channels) if self.per_channel else 1)

    @property
    def feature_size(self) -> int:
        """Length of the feature vector fed to the dense layer (trunk, then centre intensities if any)."""
        return self.trunk_size + self.centre_size

    @property
    def nucleus_mask(self) -> bool:
        """Whether patches carry the centre cell's nucleus mask as an extra plane after the channels."""
        return self.centre_block == "nucleus"

    @property
    def planes(self) -> int:
        """Planes of an input patch: the channels, then the nucleus mask if the model reads it."""
        return len(self.channels) + self.nucleus_mask

    @property
    def trunk_planes(self) -> int:
        """Planes the convolutions read: the channels (per channel: the channel, the nucleus mask and the nuclear
        flag)."""
        return 3 if self.per_channel else len(self.channels)

    @property
    def centre_parts(self) -> int:
        """Blocks of channel means in the centre block, each normalised on its own (0 without a centre block)."""
        if self.nucleus_mask:
            return 1 + bool(self.ring)
        return self.centre_rings if self.centre_radius else 0

    @property
    def head_width(self) -> int:
        """Columns of the stored dense layer: every feature, or (per channel) one channel's share of them."""
        return self.channel_trunk + self.centre_parts if self.per_channel else self.feature_size

    @property
    def centre_words(self) -> str:
        """Where the centre block reads each channel's mean, in words ("" without a centre block)."""
        return describe_centre(self.centre_block, self.centre_radius, self.centre_rings, self.ring)

    @property
    def centre_size(self) -> int:
        """Length of the centre block: one mean per channel and ring or nucleus (0 without a centre block)."""
        return len(self.channels) * self.centre_parts

    def to_dict(self) -> dict:
        """JSON-ready form (model files and checkpoints record the network they hold)."""
        return asdict(self)


def describe_centre(block: str, radius: int, rings: int, ring: int = 0) -> str:
    """Where a centre block of this kind reads, in words ("" for none): one phrasing for model cards and reports."""
    if block == "nucleus":
        return "inside the cell's own nucleus mask" + (f" and in a {ring} px band around it" if ring else "")
    if not radius:
        return ""
    return f"within {radius} px of the centre" + (f" in {rings} rings of equal width" if rings > 1 else "")


def init_params(cfg: ModelConfig, seed: int = 0) -> Params:
    """Fresh weights (Kaiming-uniform convs, unit BN scale), deterministic from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    params: Params = {}
    c_in = cfg.trunk_planes
    for b in range(cfg.blocks):
        fan_in = c_in * 9
        bound = (6.0 / fan_in) ** 0.5
        params[f"conv{b}.weight"] = (torch.rand(cfg.width, c_in, 3, 3, generator=gen) * 2 - 1) * bound
        params[f"conv{b}.bias"] = torch.zeros(cfg.width)
        params[f"bn{b}.weight"] = torch.ones(cfg.width)
        params[f"bn{b}.bias"] = torch.zeros(cfg.width)
        c_in = cfg.width
    bound = (1.0 / cfg.head_width) ** 0.5
    params["head.weight"] = (torch.rand(cfg.n_classes, cfg.head_width, generator=gen) * 2 - 1) * bound
    if cfg.head_init != "meta":  # the support starts the head; its own weights learn a residual
        params["head.weight"] = torch.zeros_like(params["head.weight"])
    params["head.bias"] = torch.zeros(cfg.n_classes)
    if cfg.centre_parts:  # one gain for the centre block, starting with as much weight as the whole trunk
        params["centre.weight"] = torch.full(
            (1,),
            (cfg.channel_trunk / cfg.centre_parts) ** 0.5
            if cfg.per_channel
            else (cfg.trunk_size / cfg.centre_size) ** 0.5,
        )
    return params


def head_keys(params: Params) -> list[str]:
    """Names of the dense layer's parameters (what head-only adaptation updates)."""
    return [k for k in params if k.startswith("head.")]


def patch_scale(cfg: ModelConfig, areas) -> float:
    """How much to magnify a section whose nuclei have these `areas` (px) so their median diameter is the model's
    `nucleus_px` (1.0 within 25% of it, or for a model that does not say; clipped to 1/4..4)."""
    diameter = median_diameter(areas)
    if not cfg.nucleus_px or diameter is None:
        return 1.0
    scale = cfg.nucleus_px / diameter
    return 1.0 if 0.8 <= scale <= 1.25 else float(np.clip(scale, 0.25, 4.0))


def network_input(cfg: ModelConfig, patches: torch.Tensor) -> torch.Tensor:
    """(N, C, input_size, input_size) network input from patches cut at any size: binned by `cfg.bin` when cut at
    the patch size, else resized (area-averaged when shrinking, bilinear when magnifying)."""
    if patches.shape[-1] == cfg.patch_size:
        return bin_patches(patches, cfg.bin)
    mode = "area" if patches.shape[-1] > cfg.input_size else "bilinear"
    return F.interpolate(
        patches,
        size=(cfg.input_size, cfg.input_size),
        mode=mode,
        **({"align_corners": False} if mode == "bilinear" else {}),
    )


def bin_patches(patches: torch.Tensor, factor: int) -> torch.Tensor:
    """Average-pool (N, C, S, S) patches by `factor` (the network's input binning)."""
    return patches if factor == 1 else F.avg_pool2d(patches, factor)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def trunk_input(cfg: ModelConfig, x: torch.Tensor) -> torch.Tensor:
    """What the convolutions read of binned patches `x`: the panel's planes, or (per channel) one
    (channel, nucleus mask, nuclear flag) triple per marker channel, stacked cell-major: (N * C, 3, S, S)."""
    x = bin_patches(x, cfg.trunk_bin)
    if not cfg.per_channel:
        return _channels_last(x[:, : cfg.trunk_planes])
    n, c = len(x), len(cfg.channels)
    flags = torch.tensor(cfg.nuclear or (False,) * c, dtype=x.dtype, device=x.device)
    planes = torch.stack(
        [x[:, :c], x[:, c : c + 1].expand(-1, c, -1, -1), flags[None, :, None, None].expand(n, c, *x.shape[2:])], 2
    )
    return _channels_last(planes.flatten(0, 1))


def _conv(params: Params, b: int, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, params[f"conv{b}.weight"], params[f"conv{b}.bias"], padding=1)


def _normalise_pool(params: Params, b: int, z: torch.Tensor, stats: Params) -> torch.Tensor:
    """Batch norm with the given tissue statistics, ReLU, 2x2 max-pool."""
    z = F.batch_norm(
        z,
        stats[f"bn{b}.mean"],
        stats[f"bn{b}.var"],
        params[f"bn{b}.weight"],
        params[f"bn{b}.bias"],
        False,
        0.0,
        1e-5,
    )
    return F.max_pool2d(F.relu(z), 2)


def centre_means(cfg: ModelConfig, x: torch.Tensor) -> torch.Tensor:
    """(N, rings * C) mean of each channel of binned patches `x` in each ring of the centre disk of
    `cfg.centre_radius`, innermost ring first (one ring: the whole disk)."""
    side = cfg.input_size
    r = torch.arange(side, dtype=x.dtype, device=x.device) - (side - 1) / 2
    dist = (r[:, None] ** 2 + r[None, :] ** 2).sqrt() * cfg.bin
    edges = torch.linspace(0, cfg.centre_radius, cfg.centre_rings + 1).tolist()
    rings = torch.stack([((dist > lo) | (lo == 0)) & (dist <= hi) for lo, hi in zip(edges[:-1], edges[1:])])
    rings = rings.to(x.dtype)
    return torch.einsum("ncyx,ryx->nrc", x, rings / rings.sum((1, 2), keepdim=True)).flatten(1)


def centre_block(cfg: ModelConfig, x: torch.Tensor) -> torch.Tensor:
    """(N, centre_size) raw centre block of binned patches `x`: ring means, or each channel's mean inside the
    nucleus-mask plane (binned, so a weight per pixel), then with `ring` in the band around it; square-rooted with
    `cfg.centre_sqrt`."""
    if not cfg.nucleus_mask:
        block = centre_means(cfg, x)
    else:
        c = len(cfg.channels)
        weights = [x[:, c]]
        if cfg.ring:  # the mask grown by `ring` pixels (a max-pool dilates), less the nucleus itself
            k = cfg.ring // cfg.bin
            grown = F.max_pool2d(x[:, c : c + 1], 2 * k + 1, stride=1, padding=k)[:, 0]
            weights.append((grown - x[:, c]).clamp_min(0))
        block = torch.cat(
            [torch.einsum("ncyx,nyx->nc", x[:, :c], w) / w.sum((1, 2)).clamp_min(1e-6)[:, None] for w in weights], 1
        )
    return block.clamp_min(0).sqrt() if cfg.centre_sqrt else block


def features(cfg: ModelConfig, params: Params, x: torch.Tensor, stats: Params) -> torch.Tensor:
    """Features (N, feature_size) of binned patches `x`: the flattened trunk, then the centre block if any.

    The trunk runs channels-last: about twice the throughput of NCHW on CPU (docs/speed.md, section 1). Per channel,
    the trunk part is channel-major: channel c's embedding, then the next channel's."""
    out = trunk_input(cfg, x)
    for b in range(cfg.blocks):
        out = _normalise_pool(params, b, _conv(params, b, out), stats)
    out = (out.mean((2, 3)) if cfg.trunk_pool else out).reshape(len(x), -1)
    if not cfg.centre_parts:
        return out
    centre = centre_block(cfg, x) - stats["centre.mean"]
    if cfg.centre_whiten:  # ring by ring: (N, rings, C) @ (rings, C, C)
        c, parts = len(cfg.channels), cfg.centre_parts
        rings = centre.unflatten(1, (parts, c)).transpose(0, 1)
        whiten = stats["centre.whiten"].reshape(parts, c, c)  # sessions saved before rings hold (C, C)
        centre = torch.bmm(rings, whiten).transpose(0, 1).flatten(1)
    else:
        centre = centre / stats["centre.var"].sqrt()
    return torch.cat([out, params["centre.weight"] * centre], 1)


def head(cfg: ModelConfig, params: Params, feats: torch.Tensor, mc: bool = True) -> torch.Tensor:
    """Logits from trunk features, MC dropout on them."""
    feats = F.dropout(feats, cfg.dropout, training=mc)
    return F.linear(feats, head_weight(cfg, params), params["head.bias"])


def head_weight(cfg: ModelConfig, params: Params) -> torch.Tensor:
    """The dense layer over every feature. A per-channel model stores one row share per channel (its trunk
    embedding's weights, then one weight per centre part), the same for every channel of any panel; here it is
    laid out over the bound panel's features. Adapted weights are already full width."""
    w = params["head.weight"]
    if w.shape[1] == cfg.feature_size:
        return w
    c, t = len(cfg.channels), cfg.channel_trunk
    return torch.cat([w[:, :t].repeat(1, c), w[:, t:].repeat_interleave(c, 1)], 1)


def forward(cfg: ModelConfig, params: Params, x: torch.Tensor, stats: Params, mc: bool = True) -> torch.Tensor:
    """Logits (N, n_classes) of binned patches `x`, with MC dropout on when `mc`."""
    return head(cfg, params, features(cfg, params, x, stats), mc)


def prototype_head(cfg: ModelConfig, params: Params, feats: torch.Tensor, y: torch.Tensor) -> Params:
    """`params` with class prototypes of the labelled cells' features `feats` (labels `y`) added to the dense
    layer (Proto-MAML).

    Row k gains 2 c_k / D and its bias -|c_k|^2 / D (c_k: mean feature of class k, D: feature length),
    so the adapted head starts as a nearest-prototype classifier; an absent class adds nothing. Differentiable,
    so meta-training learns features whose class means separate new types.
    """
    onehot = F.one_hot(y, cfg.n_classes).to(feats.dtype)
    counts = onehot.sum(0)
    return head_with_prototypes(cfg, params, (onehot.T @ feats) / counts.clamp_min(1)[:, None])


def head_with_prototypes(cfg: ModelConfig, params: Params, protos: torch.Tensor) -> Params:
    """`params` with the (n_classes, feature_size) class prototypes `protos` added to the dense layer."""
    scale = 1.0 / cfg.feature_size
    out = dict(params)
    out["head.weight"] = head_weight(cfg, params) + 2 * scale * protos
    out["head.bias"] = params["head.bias"] - scale * (protos**2).sum(1)
    return out


def newton_head(cfg: ModelConfig, params: Params, feats: torch.Tensor, y: torch.Tensor) -> Params:
    """`params` after one Newton step of the dense layer's logistic loss on the labelled cells' features `feats`
    (labels `y`), the step's curvature regularised by `cfg.head_ridge` times the mean feature variance.

    The step is (F'WF + lam P^-1)^-1 F'r on support-centred features (r: labels less current probabilities, W: their
    variances, P: the prior weight of each feature, 1 for all), solved in the N x N dual form (N labels, far fewer
    than features); the bias takes the matching intercept step. Unlike prototypes it discounts features that vary
    without separating the labels. With `cfg.head_select` the step is solved again that many times, each channel's
    prior weight set from its share of the previous step (`channel_weights`). Exact for two classes (each logit row
    takes half the step of their difference), differentiable for meta-training (the prior weights are not)."""
    w, b = head_weight(cfg, params), params["head.bias"]
    p = torch.softmax(F.linear(feats, w, b), 1)
    r = F.one_hot(y, cfg.n_classes).to(feats.dtype) - p  # (N, K)
    weight = (p * (1 - p)).clamp_min(1e-4)  # (N, K) curvature per cell and logit row
    mean = feats.mean(0)
    fc = feats - mean
    step_w = _newton_step(cfg, fc, fc, r, weight)
    for _ in range(cfg.head_select):
        step_w = _newton_step(cfg, fc * channel_weights(cfg, step_w.detach()), fc, r, weight)
    step_b = r.sum(0) / weight.sum(0) / cfg.n_classes
    out = dict(params)
    out["head.weight"] = w + step_w
    out["head.bias"] = b + step_b - step_w @ mean
    return out


def _newton_step(
    cfg: ModelConfig, scaled: torch.Tensor, fc: torch.Tensor, r: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """(K, D) Newton step of the dense layer on centred features `fc` under prior weights (`scaled` = fc * P)."""
    gram = scaled @ fc.T  # F P F'
    lam = (cfg.head_ridge * gram.trace() / fc.shape[1]).clamp_min(1e-6)  # one answer: features do not vary
    eye = torch.eye(len(fc), dtype=fc.dtype, device=fc.device)
    dual = torch.stack(
        [torch.linalg.solve(weight[:, k, None] * gram + lam * eye, r[:, k]) for k in range(cfg.n_classes)], 1
    )  # (N, K)
    return (scaled.T @ dual).T / cfg.n_classes  # two classes: the logit difference takes one Newton step


def channel_weights(cfg: ModelConfig, step: torch.Tensor) -> torch.Tensor:
    """(D,) prior weight of each feature of a per-channel model: its channel's share of the (K, D) `step` (the norm
    of the channel's trunk and centre-block weights over their mean across channels), so channels the answers lean
    on are freed and the others held back."""
    c, t = len(cfg.channels), cfg.channel_trunk
    trunk, centre = step[:, : c * t].unflatten(1, (c, t)), step[:, c * t :].unflatten(1, (cfg.centre_parts, c))
    norms = ((trunk**2).sum((0, 2)) + (centre**2).sum((0, 1))).sqrt()
    share = (norms / norms.mean().clamp_min(1e-12)).clamp_min(1e-3)
    return torch.cat([share.repeat_interleave(t), share.repeat(cfg.centre_parts)])


def zca_matrix(x: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Symmetric whitening matrix Cov(x)^-1/2 of (N, C) samples; channel-order equivariant, unlike PCA whitening.

    The ridge (a fraction of each channel's variance) keeps a near-constant or duplicated channel finite. With
    fewer than 4 samples per channel the covariances are noise: the diagonal alone is used (plain standardisation).
    """
    # a C x C problem: solved on the CPU in float64 whatever the device (MPS has no float64)
    cov = torch.cov(x.T.double().cpu(), correction=0).reshape(x.shape[1], x.shape[1])
    if len(x) < 4 * x.shape[1]:
        cov = torch.diag(cov.diagonal())
    cov = cov + ridge * torch.diag(cov.diagonal().clamp_min(1e-6))
    eigval, eigvec = torch.linalg.eigh(cov)
    return ((eigvec * eigval.clamp_min(1e-12).rsqrt()) @ eigvec.T).to(x.device, x.dtype)


@torch.no_grad()
def estimate_stats(cfg: ModelConfig, params: Params, x: torch.Tensor, batch_size: int = 32) -> Params:
    """Batch-norm statistics of the tissue sample `x` under `params` (per layer mean and variance).

    Layer by layer: each layer's moments are pooled over batches, then its normalised output feeds the next.
    Small channels-last batches: 2x the speed of NCHW batches of 256 on a 2-core CPU.
    """
    stats: Params = {}
    if cfg.centre_parts:
        centre = centre_block(cfg, x)
        stats["centre.mean"] = centre.mean(0)
        if cfg.centre_whiten:  # one (C, C) matrix per ring
            stats["centre.whiten"] = torch.stack([zca_matrix(ring) for ring in centre.split(len(cfg.channels), 1)])
        else:
            stats["centre.var"] = centre.var(0, unbiased=False).clamp_min(1e-6)
    xs = [trunk_input(cfg, xb) for xb in torch.split(x, batch_size)]
    for b in range(cfg.blocks):
        zs = [_conv(params, b, xb) for xb in xs]
        count = sum(z.shape[0] * z.shape[2] * z.shape[3] for z in zs)
        mean = cast(torch.Tensor, sum(z.sum((0, 2, 3)) for z in zs)) / count
        var = cast(torch.Tensor, sum(((z - mean[None, :, None, None]) ** 2).sum((0, 2, 3)) for z in zs)) / count
        stats[f"bn{b}.mean"], stats[f"bn{b}.var"] = mean, var.clamp_min(1e-6)
        xs = [_normalise_pool(params, b, z, stats) for z in zs]
    return stats
