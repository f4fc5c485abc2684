"""What a model's features can carry, and how much of it one step on 16 labels takes: validation tasks only.

Tasks: the meta types (neuron, oligodendrocyte, microglia) on fresh simulated fields (seed 70,000, never used for
training or testing), the benchmark's split (800 cells per task as 60% pool, 40% test), every channel order
shuffled per repeat, as the validation during meta-training. The new types (astrocyte, endothelial) are not
touched. Per task: the model's one step from 8 + 8 and from 80 + 80 random labels (phase I, as the benchmark
runs it; the same draws for every model); a nearest class mean and a logistic regression fitted on *every* pool
label, on all features, on the trunk alone and on the centre block alone. The last two are ceilings for a linear one-step learner on those features.

`--label-source lab` scores every learner against the lab's marker rule (`napari_agile.bench.weak_labels`) instead of
the simulator's true types: the paper's own labels.

`--centre-blocks` probes hand-crafted centre blocks instead (no network): each channel's mean in rings around
the centre, whitened on the tissue sample ring by ring or all together; a nearest class mean from 16 or 160
random class-balanced labels (30 draws per task, the closest a one-step prototype head gets) and a logistic
regression on every label. This chose the bundled model's `centre_rings`. `--rim` probes the bundled nucleus
block the same way, alone and with each channel's mean in a rim just outside the nucleus mask; `--transductive`
its 16- or 160-label prototypes against the same refined by soft k-means on the unlabelled pool; `--stabilise`
the nucleus block against the same whitened on a robust covariance of the sample's bulk, or its intensities taken
through a square root or a logarithm first (variance-stabilising: expression is log-normal); `--shrink` its
class means against nearest shrunken centroids (few labels: let only the channels they separate count), and
`--single-channel` against one channel chosen by the labels and thresholded, `--lda` against a shrinkage linear
discriminant.

    python benchmarks/feature_probe.py [--model FILE ...] [--repeats 3] [--centre-blocks | --rim | --transductive | --stabilise | --shrink | --single-channel | --lda] [--seed 70000] [--label-source lab]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from napari_agile.bench import protocol as bm
from napari_agile.engine.model_file import AgileModel, load_model
from napari_agile.engine.network import centre_means, features, zca_matrix

SEED = 70_000


def logistic_accuracy(
    f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor, y_test: torch.Tensor, l2: float = 1e-3
) -> float:
    """Test accuracy of an L2-regularised logistic regression on standardised features (L-BFGS to convergence)."""
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    a, b = (f_train - mean) / std, (f_test - mean) / std
    w, bias = torch.zeros(a.shape[1], requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=300)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(a @ w + bias, y_train.float()) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float((((b @ w + bias) > 0).long() == y_test).float().mean())


def nearest_mean_accuracy(
    f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor, y_test: torch.Tensor
) -> float:
    means = torch.stack([f_train[y_train == k].mean(0) for k in (0, 1)])
    return float((torch.cdist(f_test, means).argmin(1) == y_test).float().mean())


def validation_bench(seed: int, label_source: str) -> bm.BenchConfig:
    """The quick benchmark's sizes on the validation fields, typed by `label_source`."""
    return replace(bm.BenchConfig.quick(), seed=seed, label_source=label_source)


def shuffled_protocols(
    model: AgileModel, repeats: int, seed: int, label_source: str
) -> Iterator[tuple[int, bm.BenchData, bm.Protocol, dict]]:
    """Per repeat r: the validation data, the protocol on it with the channel order shuffled, and the model's
    tissue statistics there."""
    cfg = model.config
    bench = validation_bench(seed, label_source)
    base = bm.build_data(bench, cfg, task_types=bm.META_TYPES)
    for r in range(repeats):
        perm = torch.as_tensor(
            np.r_[np.random.default_rng([seed, r]).permutation(len(cfg.channels)), len(cfg.channels) : cfg.planes]
        )  # a nucleus-mask plane stays last
        pool = bm.TaskPool(base.pool.patches[:, perm], base.pool.types, base.pool.fields)
        proto = bm.Protocol(bench, cfg, bm.BenchData(pool, base.tissue_idx, base.tasks), {"agile": model})
        yield r, base, proto, proto.stats(model.params)


def balanced_draws(
    model: AgileModel,
    repeats: int,
    draws: int,
    seed: int,
    label_source: str,
    types: Sequence[str] = bm.META_TYPES,
    labels: Sequence[int] = (16, 160),
) -> Iterator[tuple[bm.Protocol, dict, str, int, np.ndarray]]:
    """(protocol, statistics, task, n, labelled cells) per repeat, task, draw and label count: the paired draws
    of the one-step studies (docs/method.md), the torch seed set for each."""
    for r, _, proto, stats in shuffled_protocols(model, repeats, seed, label_source):
        for task in types:
            for d in range(draws):
                for n in labels:
                    rng = np.random.default_rng([seed, r, bm.META_TYPES.index(task), d, n])
                    torch.manual_seed(int(rng.integers(1 << 30)))
                    yield proto, stats, task, n, proto.balanced(task, n, rng)


def paired_parser(doc: str) -> argparse.ArgumentParser:
    """The options of the one-step studies: repeats (channel orders), draws per type, label source."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--label-source", default="truth", choices=("truth", "lab"))
    return parser


def print_paired(acc: dict[str, np.ndarray], labels: Sequence[int], reference: str) -> None:
    """Each row's mean accuracy and its paired difference (95 % half-width) to the row `{n} labels, {reference}`."""
    for n in labels:
        base = acc[f"{n} labels, {reference}"]
        for key in [k for k in acc if k.startswith(f"{n} labels")]:
            diff = acc[key] - base
            half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
            print(f"{key:36s} {acc[key].mean():.3f}   paired vs {reference}: {diff.mean():+.3f} ± {half:.3f}")


def probe(model_path: str, repeats: int, seed: int, label_source: str) -> dict[str, list[float]]:
    model = load_model(None if model_path == "bundled" else model_path)
    cfg = model.config
    parts = {"all": slice(None), "trunk": slice(0, cfg.trunk_size), "centre": slice(cfg.trunk_size, None)}
    out: dict[str, list[float]] = {}
    for r, base, proto, stats in shuffled_protocols(model, repeats, seed, label_source):
        for task in bm.META_TYPES:
            for n in (16, 160):
                rng = np.random.default_rng([seed, r, bm.META_TYPES.index(task)])
                idx = proto.balanced(task, n, rng)
                out.setdefault(f"one step, {n} labels", []).append(
                    proto._score(proto.adapt(model, idx, task), task, stats)["accuracy"]
                )
            (x_tr, y_tr), (x_te, y_te) = (proto._xy(base.tasks[task][s], task) for s in ("train", "test"))
            f_tr, f_te = (features(cfg, model.params, x, stats) for x in (x_tr, x_te))
            for name, cols in parts.items():
                if cfg.centre_radius or name == "trunk":
                    args = (f_tr[:, cols], y_tr, f_te[:, cols], y_te)
                    out.setdefault(f"nearest class mean, all labels, {name}", []).append(nearest_mean_accuracy(*args))
                    out.setdefault(f"logistic regression, all labels, {name}", []).append(logistic_accuracy(*args))
    return out


#: hand-crafted centre blocks: name -> (radius, rings, whitened ring by ring)
CENTRE_BLOCKS = {
    "disk 0-14 px (bundled before)": (14, 1, True),
    "rings 0-7-14 px, ring by ring": (14, 2, True),
    "rings 0-7-14 px, all together": (14, 2, False),
    "rings 0-7-14-21 px, ring by ring": (21, 3, True),
    "rings 0-7-14-21 px, all together": (21, 3, False),
    "rings 0-14-28 px, ring by ring": (28, 2, True),
}


def centre_blocks(seed: int, label_source: str, draws: int = 30) -> dict[str, list[float]]:
    """Accuracy of the hand-crafted centre blocks on the validation tasks (no network, channels as drawn)."""
    cfg = replace(load_model(None).config, centre_block="rings")  # patches without a nucleus-mask plane
    data = bm.build_data(validation_bench(seed, label_source), cfg, task_types=bm.META_TYPES)
    x = data.pool.patches.float()
    blocks = {}
    for name, (radius, rings, by_ring) in CENTRE_BLOCKS.items():
        block = centre_means(replace(cfg, centre_radius=radius, centre_rings=rings), x)
        blocks[name] = _whitened(block.split(len(cfg.channels), 1) if by_ring else (block,), data.tissue_idx)
    return _score_blocks(blocks, data, seed, draws)


def rim_blocks(seed: int, label_source: str, draws: int = 30) -> dict[str, list[float]]:
    """The bundled block (each channel's mean inside the cell's nucleus mask) against it plus each channel's mean
    in a rim just outside the mask (the mask grown by 2 or 4 binned pixels, 4 or 8 px), each part whitened, the
    rim at full weight or at a gain below 1 (what a learned per-part gain could choose for the prototypes)."""
    data, means, mask = _nucleus_block_data(seed, label_source)
    inside = _whitened((means(mask),), data.tissue_idx)
    blocks = {"nucleus (bundled)": inside}
    for grow in (2, 4):
        rim = (F.max_pool2d(mask[:, None], 2 * grow + 1, stride=1, padding=grow)[:, 0] - mask).clamp_min(0)
        outside = _whitened((means(rim),), data.tissue_idx)
        for gain in (1.0, 0.5, 0.25):
            name = f"nucleus + rim of {2 * grow} px" + ("" if gain == 1 else f" at gain {gain:g}")
            blocks[name] = torch.cat([inside, gain * outside], 1)
    return _score_blocks(blocks, data, seed, draws)


def transductive(seed: int, label_source: str, draws: int = 30) -> dict[str, list[float]]:
    """The bundled nucleus block's prototypes from 16 or 160 labels, as the step starts from them, against the same
    prototypes refined on the task's unlabelled pool cells by soft k-means (labelled cells fixed; Ren et al. 2018).

    The benchmark's pools are half positive, which suits two-cluster k-means; a section's natural proportions
    (a type at 10-35 % of the cells) would not, so a gain here is a lead, not a result."""
    out: dict[str, list[float]] = {}
    for n, labelled, y, pool, test, y_te in _nucleus_block_draws(seed, label_source, draws):
        protos = torch.stack([labelled[y == k].mean(0) for k in (0, 1)])
        for temperature in (None, 0.5, 2.0):
            refined = protos if temperature is None else _soft_kmeans(protos, labelled, y, pool, temperature)
            name = "prototypes" if temperature is None else f"refined, soft k-means at {temperature:g}"
            hit = (torch.cdist(test, refined).argmin(1) == y_te).float().mean()
            out.setdefault(f"nucleus block | {name}, {n} labels", []).append(float(hit))
    return out


def stabilised_blocks(seed: int, label_source: str, draws: int = 30) -> dict[str, list[float]]:
    """The nucleus block whitened on the whole tissue sample (bundled) against: whitened on the covariance of the
    sample's bulk, the fraction `keep` closest to its centre (C-steps of a minimum-covariance-determinant fit: a
    marker's positive cells are a minority the total covariance counts as variance); and the channel means taken
    through a square root or log(1 + m / median) before whitening (expression is log-normal: in linear units
    the bright class is the wider, which a nearest class mean does not model)."""
    data, means, mask = _nucleus_block_data(seed, label_source)
    block = means(mask).clamp_min(0)
    blocks = {"nucleus (bundled)": _whitened((block,), data.tissue_idx)}
    for keep in (0.75, 0.5):
        mean, whiten = _bulk_whitening(block[data.tissue_idx], keep)
        blocks[f"nucleus, whitened on the {keep:.0%} bulk"] = (block - mean) @ whiten
    blocks["nucleus, square root"] = _whitened((block.sqrt(),), data.tissue_idx)
    median = block[data.tissue_idx].median(0).values.clamp_min(1e-3)
    blocks["nucleus, log(1 + m / median)"] = _whitened((torch.log1p(block / median),), data.tissue_idx)
    return _score_blocks(blocks, data, seed, draws)


def shrunken_centroids(seed: int, label_source: str, draws: int = 30) -> dict[str, list[float]]:
    """The bundled nucleus block's 16- or 160-label class means against nearest shrunken centroids (Tibshirani et
    al. 2002): each dimension's class-mean difference in units of its standard error is soft-thresholded by
    `shrink`, so channels the few labels barely separate stop adding noise to the distance; scored with the
    plain distance (what a prototype head would start from) and with each dimension scaled by its pooled
    within-class spread (diagonal discriminant)."""
    out: dict[str, list[float]] = {}
    for n, labelled, y, _, test, y_te in _nucleus_block_draws(seed, label_source, draws):
        for shrink in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0):
            centroids, spread = _shrunken_centroids(labelled, y, shrink)
            for scaled in (False, True):
                scale = spread if scaled else torch.ones_like(spread)
                hit = (torch.cdist(test / scale, centroids / scale).argmin(1) == y_te).float().mean()
                name = f"shrunk by {shrink:g} SE" + (", scaled by the within-class spread" if scaled else "")
                out.setdefault(f"nucleus block | {name}, {n} labels", []).append(float(hit))
    return out


def discriminant(seed: int, label_source: str, draws: int = 30) -> dict[str, list[float]]:
    """The bundled nucleus block's 16- or 160-label class means against a shrinkage linear discriminant (LDA):
    the class-mean difference in the metric of the labels' pooled within-class covariance plus `ridge` times the
    identity. The block is whitened on the whole section, so the class means' distance is LDA only when every
    class is spread alike in every direction; a type's negatives are four other types, spread along their own
    markers, which the within-class covariance sees."""
    out: dict[str, list[float]] = {}
    for n, labelled, y, _, test, y_te in _nucleus_block_draws(seed, label_source, draws):
        class_means = torch.stack([labelled[y == k].mean(0) for k in (0, 1)])
        hit = (torch.cdist(test, class_means).argmin(1) == y_te).float().mean()
        out.setdefault(f"nucleus block | class means, {n} labels", []).append(float(hit))
        centred = labelled - class_means[y]
        within = centred.T @ centred / max(len(labelled) - 2, 1)
        for ridge in (0.1, 0.3, 1.0, 3.0):
            w = torch.linalg.solve(within + ridge * torch.eye(len(within)), class_means[1] - class_means[0])
            positive = (test - class_means.mean(0)) @ w > 0
            hit = (positive.long() == y_te).float().mean()
            out.setdefault(f"nucleus block | LDA, ridge {ridge:g}, {n} labels", []).append(float(hit))
    return out


def single_channel(seed: int, label_source: str, draws: int = 30) -> dict[str, list[float]]:
    """The bundled nucleus block's 16- or 160-label class means against one channel chosen by the labels: the
    channel whose class means differ most in units of their standard error, thresholded halfway between them
    (in linear or in log intensity). A new type is marked by one channel; two classes' means in seven whitened
    dimensions spend most of 16 labels' information on the six that do not matter."""
    data, means, mask = _nucleus_block_data(seed, label_source)
    raw = means(mask).clamp_min(1e-6)
    z = _whitened((raw,), data.tissue_idx)
    out: dict[str, list[float]] = {}
    for n, lab, y, _, te, y_te in _task_draws(data, seed, draws):
        protos = torch.stack([z[lab][y == k].mean(0) for k in (0, 1)])
        hit = (torch.cdist(z[te], protos).argmin(1) == y_te).float().mean()
        out.setdefault(f"nucleus block | class means, {n} labels", []).append(float(hit))
        for name, values in (("linear", raw), ("log", raw.log())):
            labelled = values[lab]
            mean = torch.stack([labelled[y == k].mean(0) for k in (0, 1)])
            var = torch.stack([labelled[y == k].var(0) for k in (0, 1)])
            t = (mean[1] - mean[0]) / (var.sum(0) / (n // 2)).sqrt().clamp_min(1e-9)
            c = int(t.abs().argmax())
            positive = (values[te, c] > mean[:, c].mean()) == (t[c] > 0)
            hit = (positive.long() == y_te).float().mean()
            out.setdefault(f"nucleus block | one channel chosen by the labels, {name} midpoint, {n} labels", []).append(
                float(hit)
            )
    return out


def _shrunken_centroids(x: torch.Tensor, y: torch.Tensor, shrink: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(2, d) class centroids of `x` shrunk towards the overall mean, and the (d,) pooled within-class spread
    (plus its median, as in PAM, so a dimension that happens to be tight is not trusted blindly)."""
    mean = x.mean(0)
    class_means = torch.stack([x[y == k].mean(0) for k in (0, 1)])
    counts = torch.stack([(y == k).sum() for k in (0, 1)]).float()
    within = ((x - class_means[y]) ** 2).sum(0) / (len(x) - 2)
    spread = within.sqrt() + within.sqrt().median()
    se = (1 / counts - 1 / len(x)).sqrt()[:, None] * spread
    d = (class_means - mean) / se
    shrunk = d.sign() * (d.abs() - shrink).clamp_min(0)
    return mean + se * shrunk, spread


def _bulk_whitening(sample: torch.Tensor, keep: float, steps: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and ZCA matrix of the `keep` fraction of `sample` closest to their own mean (Mahalanobis), iterated."""
    inside = torch.ones(len(sample), dtype=torch.bool)
    for _ in range(steps):
        mean, whiten = sample[inside].mean(0), zca_matrix(sample[inside])
        distance = (((sample - mean) @ whiten) ** 2).sum(1)
        inside = distance <= distance.quantile(keep)
    return sample[inside].mean(0), zca_matrix(sample[inside])


def _nucleus_block_data(
    seed: int, label_source: str
) -> tuple[bm.BenchData, Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """The validation data with the bundled model's patches (mask plane included), a function giving each cell's
    channel means under a per-pixel weight, and the binned nucleus masks."""
    cfg = load_model(None).config
    data = bm.build_data(validation_bench(seed, label_source), cfg, task_types=bm.META_TYPES)
    x = data.pool.patches.float()
    c = len(cfg.channels)

    def means(weight: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ncyx,nyx->nc", x[:, :c], weight) / weight.sum((1, 2)).clamp_min(1e-6)[:, None]

    return data, means, x[:, c]


def _nucleus_block_draws(
    seed: int, label_source: str, draws: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per validation task and label draw: (n, labelled cells' whitened nucleus blocks, their labels, the whole
    pool's blocks, the test cells' blocks, the test labels)."""
    data, means, mask = _nucleus_block_data(seed, label_source)
    z = _whitened((means(mask),), data.tissue_idx)
    for n, lab, y, tr, te, y_te in _task_draws(data, seed, draws):
        yield n, z[lab], y, z[tr], z[te], y_te


def _task_draws(
    data: bm.BenchData, seed: int, draws: int
) -> Iterator[tuple[int, np.ndarray, torch.Tensor, np.ndarray, np.ndarray, torch.Tensor]]:
    """Per validation task and label draw: (n, the labelled pool cells, their labels, the pool cells, the test
    cells, the test labels), cells as indices into the data's pool."""
    for task in bm.META_TYPES:
        tr, y_tr, te, y_te = _split(data, task)
        for n, sel in _label_draws(y_tr, seed, draws):
            yield n, tr[sel], y_tr[sel], tr, te, y_te


def _split(data: bm.BenchData, task: str) -> tuple[np.ndarray, torch.Tensor, np.ndarray, torch.Tensor]:
    """A validation task's pool and test cells with their binary labels."""
    (tr, y_tr), (te, y_te) = (
        (i, torch.as_tensor(data.pool.types[i] == task).long())
        for i in (data.tasks[task]["train"], data.tasks[task]["test"])
    )
    return tr, y_tr, te, y_te


def _label_draws(y_tr: torch.Tensor, seed: int, draws: int) -> Iterator[tuple[int, np.ndarray]]:
    """(n, positions) of `draws` random class-balanced label sets of 16 and of 160 pool cells."""
    for n in (16, 160):
        for d in range(draws):
            rng = np.random.default_rng([seed, d])
            yield (
                n,
                np.concatenate([rng.choice(np.flatnonzero(y_tr.numpy() == k), n // 2, replace=False) for k in (0, 1)]),
            )


def _soft_kmeans(
    protos: torch.Tensor,
    labelled: torch.Tensor,
    y: torch.Tensor,
    pool: torch.Tensor,
    temperature: float,
    iterations: int = 5,
) -> torch.Tensor:
    """Class means over the labelled cells (weight 1 each) and the pool cells (soft assignments), iterated."""
    onehot = F.one_hot(y, 2).float()
    for _ in range(iterations):
        soft = torch.softmax(-(torch.cdist(pool, protos) ** 2) / temperature, 1)
        weights = torch.cat([onehot, soft])
        protos = (weights.T @ torch.cat([labelled, pool])) / weights.sum(0)[:, None]
    return protos


def _whitened(parts: Sequence[torch.Tensor], sample: np.ndarray) -> torch.Tensor:
    """Each part centred and ZCA-whitened on the tissue sample, side by side."""
    return torch.cat([(p - p[sample].mean(0)) @ zca_matrix(p[sample]) for p in parts], 1)


def _score_blocks(blocks: dict[str, torch.Tensor], data: bm.BenchData, seed: int, draws: int) -> dict[str, list[float]]:
    """Per block and validation task: a nearest class mean from 16 or 160 random class-balanced labels (`draws`
    draws) and a logistic regression on every pool label."""
    out: dict[str, list[float]] = {}
    for name, z in blocks.items():
        for task in bm.META_TYPES:
            tr, y_tr, te, y_te = _split(data, task)
            for n, sel in _label_draws(y_tr, seed, draws):
                out.setdefault(f"{name} | nearest class mean, {n} labels", []).append(
                    nearest_mean_accuracy(z[tr][sel], y_tr[sel], z[te], y_te)
                )
            out.setdefault(f"{name} | logistic regression, all labels", []).append(
                logistic_accuracy(z[tr], y_tr, z[te], y_te)
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model",
        nargs="+",
        default=["bundled"],
        help="model file(s), or 'bundled' (the default); from a second on, each row also gives the "
        "paired difference to the first (the same draws)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--centre-blocks", action="store_true", help="probe hand-crafted centre blocks instead")
    ap.add_argument("--rim", action="store_true", help="probe the nucleus block with and without a rim outside it")
    ap.add_argument(
        "--transductive", action="store_true", help="probe prototypes refined by soft k-means on the unlabelled pool"
    )
    ap.add_argument(
        "--stabilise",
        action="store_true",
        help="probe the nucleus block whitened on the sample's bulk, or after a square root or a log",
    )
    ap.add_argument(
        "--shrink",
        action="store_true",
        help="probe nearest shrunken centroids on the nucleus block against its plain class means",
    )
    ap.add_argument(
        "--single-channel",
        action="store_true",
        help="probe one channel chosen by the labels against the nucleus block's class means",
    )
    ap.add_argument(
        "--lda",
        action="store_true",
        help="probe a shrinkage linear discriminant on the nucleus block against its plain class means",
    )
    ap.add_argument("--seed", type=int, default=SEED, help="simulation seed of the validation fields")
    ap.add_argument(
        "--label-source",
        choices=("truth", "lab"),
        default="truth",
        help="score against the simulator's types or the lab's marker rule",
    )
    args = ap.parse_args()
    probes = {
        "rim": rim_blocks,
        "transductive": transductive,
        "stabilise": stabilised_blocks,
        "shrink": shrunken_centroids,
        "single_channel": single_channel,
        "centre_blocks": centre_blocks,
        "lda": discriminant,
    }
    chosen = [probes[name] for name in probes if getattr(args, name)]
    if chosen:
        probe_blocks = chosen[0]
        print("| centre block | learner | accuracy (mean ± SE) |\n|---|---|---|")
        for name, accs in probe_blocks(args.seed, args.label_source).items():
            print(f"| {name} | {np.mean(accs):.3f} ± {standard_error(accs):.3f} |")
        return
    runs = [probe(path, args.repeats, args.seed, args.label_source) for path in args.model]
    print(
        "| model | learner | features | accuracy (mean ± SE) | paired difference to the first (± SE) |\n"
        "|---|---|---|---|---|"
    )
    for path, rows in zip(args.model, runs):
        for name, accs in rows.items():
            learner, _, part = name.rpartition(", ") if "all labels" in name else (name, "", "all")
            diff = np.subtract(accs, runs[0][name])
            paired = "" if path == args.model[0] else f"{diff.mean():+.3f} ± {standard_error(diff):.3f}"
            print(f"| {path} | {learner} | {part} | {np.mean(accs):.3f} ± {standard_error(accs):.3f} | {paired} |")


def standard_error(values) -> float:
    """Standard error of the mean of `values`."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


if __name__ == "__main__":
    main()
