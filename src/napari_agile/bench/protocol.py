"""The paper's protocol (Table 2, Fig. 3) on simulated tissue: every method, resumable, JSON out.

Data: 800 cells per type (5 types); a binary task per real type (astrocyte, endothelial): 800 positives and
800 negatives drawn from the other types; 60% of each task is the labelling pool, 40% the test set.
Meta-learned methods are meta-trained on separate simulated fields (other seeds) on the meta types only.
Cell types are the simulator's truth, or with `label_source="lab"` the lab's weak labels (bench/weak_labels.py), which are
what the paper's tables were measured against.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from napari_agile.bench.weak_labels import lab_labelled
from napari_agile.engine.meta import MetaConfig, adapt_params, meta_train
from napari_agile.engine.model_file import AgileModel
from napari_agile.engine.network import ModelConfig, Params, estimate_stats, head
from napari_agile.engine.supervised import binary_metrics, predict_proba, train_supervised
from napari_agile.engine.tasks import Augmentation, TaskPool, pool_from_tissues
from napari_agile.engine.training import simulated_fields
from napari_agile.engine.uncertainty import SPREAD, cover, mc_head_probs, scores, spread_picks, trunk_features
from napari_agile.errors import AgileInputError
from napari_agile.io.tissue import PAPER_CHANNELS
from napari_agile.synth.simulator import CELL_TYPES, SimParams, inner_cells, simulate_cell_pool, simulate_tissue

META_TYPES = ("neuron", "oligodendrocyte", "microglia")
REAL_TYPES = ("astrocyte", "endothelial")
METHODS = ("vanilla_limit", "vanilla_full", "transfer", "maml", "agile_phase1", "agile_phase2", "agile_phase2_160")


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of the protocol; `quick()` is the few-minute version, the defaults the full run."""

    n_per_type: int = 800
    repeats: int = 10
    labels: int = 16
    big_labels: int = 160
    al_batch: int = 4  # cells asked per round of active learning (16 labels = 4 rounds)
    steps_curve: int = 10
    label_curve: tuple[int, ...] = (16, 32, 64, 160, 320, 960)
    supervised_steps: int = 100
    pretrain_steps: int = 300
    meta_iterations: int = 2000
    meta_tasks: int = 8  # tasks per meta-batch (paper: 12; 4 cost nothing measurable, docs/method.md)
    meta_fields: int = 8
    field: int = 1024
    mc_passes: int = 20
    seed: int = 0
    al_spread: int = 1  # > 1: a round asks the al_batch cells covering the al_spread * al_batch most uncertain
    extra_acquisition: tuple[str, ...] = ("auto", "bald", "random")
    # the bundled recipe (configs/bundled-model.toml, docs/method.md): Proto-MAML heads, the centre-intensity
    # block, first-order, a head-only step, channels shuffled on every augmented task; every method shares the network
    head_init: str = "prototypes"
    centre_radius: int = 14
    centre_whiten: bool = True
    centre_rings: int = 2
    centre_block: str = "nucleus"  # the centre block read inside each cell's own nucleus mask ("rings": around it)
    first_order: bool = True
    adapt_scope: str = "head"
    shuffle: float = 1.0
    randomize: float = 1.0  # domain randomisation of the meta-training fields
    label_source: str = "truth"  # "truth": the simulator's cell types; "lab": the lab's weak labels, as in the paper
    # 2: Transfer pre-trains on the meta-training fields (1, before 2026-11-27 22:00: on the benchmark's own cells,
    # the real tasks' test cells among the negatives); every other row is the same in both
    protocol: int = 2

    def __post_init__(self) -> None:
        if self.steps_curve > self.supervised_steps:
            raise AgileInputError(
                f"Fig. 3(a)'s curve ({self.steps_curve} steps) is read off the baselines' training "
                f"runs: it cannot be longer than their {self.supervised_steps} steps."
            )

    @classmethod
    def quick(cls) -> BenchConfig:
        """The few-minute run: fewer and smaller everything, and the Session's own active rounds (spread 9)."""
        return cls(
            al_spread=SPREAD,
            n_per_type=300,
            repeats=3,
            label_curve=(16, 64, 160),
            supervised_steps=100,
            pretrain_steps=100,
            meta_iterations=100,
            meta_tasks=4,
            meta_fields=4,
            field=768,
            steps_curve=5,
            extra_acquisition=("auto",),
        )


#: what a results file saved before a config field existed ran with (not necessarily today's default)
RAN_BEFORE_FIELD = {"label_source": "truth", "centre_block": "rings", "al_spread": 1, "protocol": 1, "meta_tasks": 8}


@dataclass
class BenchData:
    """Binned patches of the benchmark cells and, per real task, its pool and test indices."""

    pool: TaskPool
    tissue_idx: np.ndarray  # unlabelled sample that sets batch-norm statistics
    tasks: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def build_data(
    bench: BenchConfig, cfg: ModelConfig, params: SimParams | None = None, task_types: tuple[str, ...] = REAL_TYPES
) -> BenchData:
    """Simulate fields until every type has n_per_type cells, keep that many per type, split each task's cells
    (the real types by default; validation studies pass the meta types)."""
    rng = np.random.default_rng(bench.seed)
    pool = labelled_pool(bench, cfg, params)
    keep = np.concatenate(
        [rng.choice(np.flatnonzero(pool.types == c), bench.n_per_type, replace=False) for c in CELL_TYPES]
    )
    pool = TaskPool(pool.patches[keep], pool.types[keep], pool.fields[keep])
    data = BenchData(pool, rng.choice(len(pool), min(512, len(pool)), replace=False))
    for name in task_types:
        pos = np.flatnonzero(pool.types == name)
        neg = rng.choice(np.flatnonzero(pool.types != name), len(pos), replace=False)
        idx = rng.permutation(np.concatenate([pos, neg]))
        cut = int(round(0.6 * len(idx)))
        data.tasks[name] = {"train": idx[:cut], "test": idx[cut:]}
    return data


def labelled_pool(bench: BenchConfig, cfg: ModelConfig, params: SimParams | None = None) -> TaskPool:
    """Binned patches of fields (seeds seed, seed+1, ...) until every type has n_per_type inner cells, typed by
    the labels asked for.

    The lab's rule keeps about 5 % of cells per marker, few of them endothelial, so it takes hundreds of fields;
    each is ranked on its own (a tile of one section) so that only its kept cells' patches are held.
    """
    if bench.label_source == "truth":
        sims = simulate_cell_pool(bench.n_per_type, bench.seed, params, bench.field)
        return pool_from_tissues([(i.tissue, i.cells) for i in map(inner_cells, sims)], cfg, seed=bench.seed)
    if bench.label_source != "lab":
        raise AgileInputError(f"label_source must be 'truth' or 'lab'; got {bench.label_source!r}.")
    pools: list[TaskPool] = []
    counts = dict.fromkeys(CELL_TYPES, 0)
    while min(counts.values()) < bench.n_per_type:
        rarest = min(counts.values()) / max(len(pools), 1)
        if len(pools) >= 20 and (rarest == 0 or bench.n_per_type / rarest > 2000):  # do not simulate for hours
            raise AgileInputError(
                f"The lab's rule gives too few of some type ({counts} in {len(pools)} fields) for "
                f"{bench.n_per_type} per type within 2000 fields: ask for fewer cells per type."
            )
        inner = inner_cells(simulate_tissue((bench.field, bench.field), bench.seed + len(pools), params))
        pools.append(pool_from_tissues(lab_labelled([(inner.tissue, inner.cells)]), cfg, seed=bench.seed))
        for t in CELL_TYPES:
            counts[t] += int(np.sum(pools[-1].types == t))
    return TaskPool(
        torch.cat([p.patches for p in pools]),
        np.concatenate([p.types for p in pools]),
        np.concatenate([np.full(len(p), i) for i, p in enumerate(pools)]),
    )


def meta_fields_pool(bench: BenchConfig, cfg: ModelConfig) -> tuple[TaskPool, TaskPool]:
    """Fields for meta-training (seeds disjoint from the benchmark's), plus one for validation; each draws its
    own imaging and staining at `bench.randomize`, as the bundled recipe's fields do.

    With the lab's labels each field is its own section, four times the side so that its 5 % per marker still
    holds a task's 24 cells of each meta type."""
    lab = bench.label_source == "lab"
    pairs = simulated_fields(
        {"field_size": bench.field * (4 if lab else 1), "randomize": bench.randomize},
        bench.seed + 10_000,
        bench.meta_fields + 1,
    )
    if lab:
        pairs = [lab_labelled([p])[0] for p in pairs]
    return pool_from_tissues(pairs[:-1], cfg, 300, bench.seed), pool_from_tissues(pairs[-1:], cfg, 300, bench.seed)


class Protocol:
    """Runs the methods on the benchmark data; each call is one repeat of one method on one task."""

    def __init__(
        self,
        bench: BenchConfig,
        cfg: ModelConfig,
        data: BenchData,
        models: dict[str, AgileModel],
        meta_pool: TaskPool | None = None,
    ):
        self.bench, self.cfg, self.data, self.models, self.meta_pool = bench, cfg, data, models, meta_pool
        self.tissue_x = data.pool.patches[data.tissue_idx].float()
        self._transfer: Params | None = None
        self._stats: dict[int, tuple[Params, Params]] = {}
        self._test_feats: dict[tuple[int, str], tuple[Params, torch.Tensor]] = {}  # params held: their id stays unique

    def stats(self, params: Params) -> Params:
        """Tissue statistics under `params`, computed once per weight set (held so its id stays unique)."""
        if id(params) not in self._stats:
            self._stats[id(params)] = (params, estimate_stats(self.cfg, params, self.tissue_x))
        return self._stats[id(params)][1]

    def _xy(self, idx: np.ndarray, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.pool.patches[idx].float(), self._labels(idx, task)

    def _labels(self, idx: np.ndarray, task: str) -> torch.Tensor:
        return torch.as_tensor(self.data.pool.types[idx] == task).long()

    def _score(
        self, params: Params, task: str, stats: Params | None = None, feats: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Test-set metrics; adapted weights keep their meta-init's tissue statistics, as in a Session."""
        y = self._labels(self.data.tasks[task]["test"], task)
        return binary_metrics(y.numpy(), self.test_proba(params, task, stats, feats) >= 0.5)

    def test_proba(
        self, params: Params, task: str, stats: Params | None = None, feats: torch.Tensor | None = None
    ) -> np.ndarray:
        """The test cells' positive probabilities under `params` (with `stats`, else their own tissue statistics).

        `feats`: the test cells' trunk features when only the dense layer differs from the weights they came from
        (a head-only step), so a whole curve of steps costs one network pass."""
        if feats is not None:
            return torch.softmax(head(self.cfg, params, feats, mc=False), -1)[:, 1].numpy()
        x, _ = self._xy(self.data.tasks[task]["test"], task)
        stats = estimate_stats(self.cfg, params, self.tissue_x) if stats is None else stats
        return predict_proba(self.cfg, params, stats, x)

    def test_features(self, model: AgileModel, task: str) -> torch.Tensor | None:
        """The test cells' trunk features under the meta-trained weights, which every head-only step keeps (None
        when the step moves the whole network)."""
        if model.adapt_scope != "head":
            return None
        key = (id(model.params), task)  # the same for every run of a model on a task: computed once
        if key not in self._test_feats:
            x, _ = self._xy(self.data.tasks[task]["test"], task)
            self._test_feats[key] = (model.params, trunk_features(self.cfg, model.params, self.stats(model.params), x))
        return self._test_feats[key][1]

    def balanced(self, task: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """n random labels from the task's pool, half positive (the paper's class-balanced K)."""
        train = self.data.tasks[task]["train"]
        pos = train[self.data.pool.types[train] == task]
        neg = train[self.data.pool.types[train] != task]
        if n >= len(train):
            return train
        return np.concatenate([rng.choice(pos, n // 2, replace=False), rng.choice(neg, n - n // 2, replace=False)])

    def adapt(self, model: AgileModel, idx: np.ndarray, task: str, steps: int = 1) -> Params:
        """`steps` inner-loop steps from the model's meta-trained weights on the labelled cells `idx`."""
        if steps == 0:
            return model.params
        x, y = self._xy(idx, task)
        fast = adapt_params(
            self.cfg, model.params, self.stats(model.params), x, y, model.inner_lr, steps, model.adapt_scope
        )
        return {k: v.detach() for k, v in fast.items()}

    def active(
        self, model: AgileModel, task: str, budget: int, batch: int, rng: np.random.Generator, method: str = "entropy"
    ) -> np.ndarray:
        """AGILE phase II: ask the `batch` most uncertain pool cells (MC dropout), adapt, repeat to `budget`.

        `method="auto"` asks the first batch by covering the pool instead, as `Session.suggest` does by default.
        With `al_spread` > 1 a round asks the `batch` cells covering the al_spread * batch most uncertain, as
        `Session.suggest` does; Table 2 keeps the paper's round (docs/method.md).
        """
        train = self.data.tasks[task]["train"]
        x_pool = self.data.pool.patches[train]
        stats = self.stats(model.params)
        chosen: list[int] = []
        params = model.params
        while len(chosen) < min(budget, len(train)):
            feats = trunk_features(self.cfg, params, stats, x_pool)
            n = min(batch, budget - len(chosen))
            if method == "auto" and not chosen:
                chosen += [int(i) for i in cover(self.cfg, feats, n, seed=int(rng.integers(1 << 30)))]
            else:
                samples = mc_head_probs(self.cfg, params, feats, self.bench.mc_passes, int(rng.integers(1 << 30)))
                score = scores(samples.numpy(), "entropy" if method == "auto" else method, rng)
                score[chosen] = -np.inf
                top = np.argsort(-score, kind="stable")[: n * self.bench.al_spread]
                if self.bench.al_spread > 1:
                    top = spread_picks(self.cfg, feats, top, n, seed=int(rng.integers(1 << 30)))
                chosen += [int(i) for i in top]
            params = self.adapt(model, train[chosen], task)
        return train[np.asarray(chosen)]

    def supervised(
        self,
        idx: np.ndarray,
        task: str,
        seed: int,
        init: Params | None = None,
        snapshots: dict[int, Params] | None = None,
    ) -> Params:
        x, y = self._xy(idx, task)
        return train_supervised(
            self.cfg, x, y, self.tissue_x, steps=self.bench.supervised_steps, seed=seed, init=init, snapshots=snapshots
        )

    def transfer_init(self) -> Params:
        """Pre-train on the three meta tasks of the meta-training fields pooled into one binary problem (their labels
        contradict); like meta-training it never sees the benchmark's cells."""
        if self._transfer is None:
            if self.meta_pool is None:
                raise AgileInputError("Transfer pre-trains on the meta-training fields: give Protocol a meta_pool.")
            pool = self.meta_pool
            xs, ys = [], []
            for t in META_TYPES:
                pos = np.flatnonzero(pool.types == t)
                neg = np.random.default_rng(1).choice(np.flatnonzero(pool.types != t), len(pos), replace=False)
                idx = np.concatenate([pos, neg])
                xs.append(pool.patches[idx].float())
                ys.append(torch.as_tensor(pool.types[idx] == t).long())
            sample = np.random.default_rng(2).choice(len(pool), min(512, len(pool)), replace=False)
            self._transfer = train_supervised(
                self.cfg,
                torch.cat(xs),
                torch.cat(ys),
                pool.patches[sample].float(),
                steps=self.bench.pretrain_steps,
                seed=self.bench.seed,
            )
        return self._transfer

    def run(self, method: str, task: str, repeat: int) -> dict:
        """One repeat of `method` on `task`: Table 2's metrics and Fig. 3(a)'s accuracy-per-step curve.

        Torch's global generator (dropout) is seeded per run, so a run's result does not depend on which runs came
        before it in this process: a resumed benchmark gives what an uninterrupted one would.
        """
        rng = np.random.default_rng([self.bench.seed, repeat, REAL_TYPES.index(task), sum(map(ord, method))])
        seed = int(rng.integers(1 << 30))
        torch.manual_seed(seed)
        n = self.bench.big_labels if method == "agile_phase2_160" else self.bench.labels
        steps = range(self.bench.steps_curve + 1)
        if method in ("vanilla_limit", "vanilla_full", "transfer"):  # scored under their own tissue statistics
            idx = self.data.tasks[task]["train"] if method == "vanilla_full" else self.balanced(task, n, rng)
            init = self.transfer_init() if method == "transfer" else None
            snaps: dict[int, Params] = dict.fromkeys(steps)
            params = self.supervised(idx, task, seed, init, snaps)
            curve = [self._score(snaps[s], task)["accuracy"] for s in steps]
            return {**self._score(params, task), "labels": int(len(idx)), "steps_curve": curve}
        model = self.models["maml" if method == "maml" else "agile"]
        if method in ("maml", "agile_phase1"):
            idx = self.balanced(task, n, rng)
        else:
            how = method.rsplit("_", 1)[-1] if method.endswith(("_bald", "_random", "_auto")) else "entropy"
            idx = self.active(model, task, n, self.bench.al_batch if n <= 16 else 16, rng, how)
        params = self.adapt(model, idx, task)  # before the curve: the step's dropout draws stay those of earlier runs
        stats, feats = self.stats(model.params), self.test_features(model, task)
        curve = [self._score(self.adapt(model, idx, task, s), task, stats, feats)["accuracy"] for s in steps]
        return {**self._score(params, task, stats, feats), "labels": int(len(idx)), "steps_curve": curve}


def summarise(rows: list[dict]) -> dict:
    """Mean of each metric, accuracy std and a 95% confidence interval of the mean accuracy."""
    acc = np.array([r["accuracy"] for r in rows])
    half = 1.96 * acc.std(ddof=1) / np.sqrt(len(acc)) if len(acc) > 1 else float("nan")
    out = {k: float(np.mean([r[k] for r in rows])) for k in ("precision", "recall", "f1", "accuracy")}
    out.update(
        std=float(acc.std(ddof=1)) if len(acc) > 1 else float("nan"),
        ci95=[out["accuracy"] - half, out["accuracy"] + half],
        n=len(rows),
        steps_curve=np.mean([r["steps_curve"] for r in rows], 0).tolist(),
    )
    return out


def meta_models(
    bench: BenchConfig, cfg: ModelConfig, out: Path, log: Callable[[str], None], pool: TaskPool, val: TaskPool
) -> dict[str, AgileModel]:
    """AGILE (task augmentation) and plain MAML (none) meta-trained on `pool` with the same recipe and schedule,
    resumable."""
    models = {}
    for name, p in (("agile", 0.5), ("maml", 0.0)):
        aug = Augmentation(p=p, shuffle=bench.shuffle if p > 0 else None)
        meta = MetaConfig(
            meta_types=META_TYPES,
            iterations=bench.meta_iterations,
            tasks_per_batch=bench.meta_tasks,
            augmentation=aug,
            first_order=bench.first_order,
            adapt_scope=bench.adapt_scope,
            seed=bench.seed,
            validate_every=max(bench.meta_iterations // 4, 1),
        )
        t0 = time.time()
        params, hist = meta_train(cfg, meta, pool, val, out / f"meta-{name}")
        log(f"meta-trained {name}: {len(hist)} iterations, val {hist[-1].get('val_acc')}, {time.time() - t0:.0f}s")
        models[name] = AgileModel(cfg, params, meta.inner_lr, meta.adapt_scope, {"meta": meta.to_dict()})
    return models


def run_benchmark(
    bench: BenchConfig, out: str | Path, log: Callable[[str], None] = print, methods: Sequence[str] | None = None
) -> dict:
    """Run (or resume) every method on both real tasks and Fig. 3(b), or only those `methods` names ("label_curve":
    Fig. 3(b)); results land in out/results.json after each repeat."""
    every = METHODS + tuple(f"agile_phase2_{a}" for a in bench.extra_acquisition)
    unknown = sorted(set(methods or ()) - set(every) - {"label_curve"})
    if unknown:
        raise AgileInputError(
            f"Unknown benchmark method(s) {', '.join(unknown)}; choose among {', '.join(every)}, label_curve."
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    current = json.loads(json.dumps(asdict(bench)))
    # a repeat's draws depend only on the seed, repeat, task and method: more repeats extend a run, fewer add none
    if "config" in results and _sizes({**RAN_BEFORE_FIELD, **results["config"]}) != _sizes(current):
        raise AgileInputError(f"{results_path} holds another benchmark config; use a fresh output folder.")
    repeats = max(bench.repeats, results.get("config", {}).get("repeats", 0))
    results.update(
        config={**asdict(bench), "repeats": repeats},
        runs=results.get("runs", {}),
        machine=_machine(),
        methods=_asked(results, methods),
    )
    cfg = ModelConfig(
        channels=PAPER_CHANNELS,
        head_init=bench.head_init,
        centre_radius=bench.centre_radius,
        centre_whiten=bench.centre_whiten,
        centre_rings=bench.centre_rings,
        centre_block=bench.centre_block,
    )
    torch.manual_seed(bench.seed)
    t0 = time.time()
    call = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_at_start": os.getloadavg()[0]}
    before = len(results["runs"])
    data = build_data(bench, cfg)
    log(f"data: {len(data.pool)} cells in {time.time() - t0:.0f}s")
    meta_pool, meta_val = meta_fields_pool(bench, cfg)
    proto = Protocol(bench, cfg, data, meta_models(bench, cfg, out, log, meta_pool, meta_val), meta_pool)
    for method in [m for m in every if methods is None or m in methods]:
        for task in REAL_TYPES:
            for r in range(bench.repeats):
                key = f"{method}/{task}/{r}"
                if key in results["runs"]:
                    continue
                results["runs"][key] = proto.run(method, task, r)
                results_path.write_text(json.dumps(results))
            log(f"{method:18s} {task:12s} acc {summarise(_rows(results, method, task))['accuracy']:.3f}")
    if methods is None or "label_curve" in methods:
        results["label_curve"] = label_curve(proto, bench, results, results_path)
    results["summary"] = summaries(results)
    if "calls" not in results and before:  # runs made by calls from before calls were timed
        results["calls"] = [{"date": None, "seconds": None, "load_at_start": None}]
    results.setdefault("calls", []).append({**call, "seconds": time.time() - t0})  # what each call of this run cost
    results_path.write_text(json.dumps(results, indent=1))
    return results


def _asked(results: dict, methods: Sequence[str] | None) -> list[str] | None:
    """The rows a folder has been asked for over all its runs (None: every row); folders saved before this was
    recorded were asked for what they hold."""
    if "methods" in results:
        before = results["methods"]
    elif results.get("runs"):
        before = sorted(
            {k.split("/")[0] for k in results["runs"]} | ({"label_curve"} if "label_curve" in results else set())
        )
    else:
        before = []
    return None if methods is None or before is None else sorted(set(before) | set(methods))


def _sizes(config: dict) -> dict:
    """A benchmark config less its repeat count: what must match for runs to be resumed or extended."""
    return {k: v for k, v in config.items() if k != "repeats"}


def summaries(results: dict) -> dict:
    """Table 2's rows from the runs done so far (both tasks pooled): a finished run's summary, or where an
    unfinished one stands."""
    return {
        m: summarise([r for t in REAL_TYPES for r in _rows(results, m, t)])
        for m in sorted({k.split("/")[0] for k in results["runs"]})
    }


def _rows(results: dict, method: str, task: str) -> list[dict]:
    return [v for k, v in results["runs"].items() if k.startswith(f"{method}/{task}/")]


def label_curve(proto: Protocol, bench: BenchConfig, results: dict, results_path: Path) -> dict:
    """Fig. 3(b): accuracy against number of labels for AGILE (entropy, 1 step) and Vanilla (100 steps); each
    point is saved in results as it finishes, so an interrupted curve resumes where it stopped."""
    points = results.setdefault("label_points", {})
    for n in bench.label_curve:
        if str(n) in points:
            continue
        agile, vanilla = [], []
        for task in REAL_TYPES:
            for r in range(max(1, bench.repeats // 2)):
                rng = np.random.default_rng([bench.seed, r, n])
                torch.manual_seed(
                    int(np.random.default_rng([bench.seed, r, n, REAL_TYPES.index(task)]).integers(1 << 30))
                )
                model = proto.models["agile"]
                idx = proto.active(model, task, n, bench.al_batch if n <= 16 else max(16, n // 10), rng)
                agile.append(
                    proto._score(
                        proto.adapt(model, idx, task), task, proto.stats(model.params), proto.test_features(model, task)
                    )["accuracy"]
                )
                idx = proto.balanced(task, n, rng)
                vanilla.append(proto._score(proto.supervised(idx, task, int(rng.integers(1 << 30))), task)["accuracy"])
        points[str(n)] = {"agile": float(np.mean(agile)), "vanilla": float(np.mean(vanilla)), "runs": len(agile)}
        results_path.write_text(json.dumps(results))
    return {
        "labels": list(bench.label_curve),
        "agile": [points[str(n)]["agile"] for n in bench.label_curve],
        "vanilla": [points[str(n)]["vanilla"] for n in bench.label_curve],
    }


def _machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
    }
