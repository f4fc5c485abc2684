"""Short meta-training runs of recipe variants, compared on held-out fields: how the bundled recipe was chosen.

Every variant starts from scratch on the bundled config's data (configs/bundled-model.toml, [data]) and runs
the same number of iterations with 4 tasks per batch (unless the variant sets another number). Selection uses `val_shuffled`: one-step accuracy on the
meta types of held-out fields with their channels shuffled (the network cannot recall which channel marks
which type; it must find the marker from the support). With `--holdout TYPE` the variants meta-train on the other
two meta types and `val_shuffled` scores TYPE alone: a type the features never saw, as the new types are, but still
no test type. `new_types` (astrocyte, endothelial, 8 + 8 random
labels, one step, fresh simulated fields) is reported for information only and chose nothing.

    python benchmarks/meta_variants.py [--iterations 300] [--only NAME ...] [--out meta-variants.jsonl] [--holdout TYPE]
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

from napari_agile.bench import protocol as bm
from napari_agile.engine.meta import MetaConfig, adapt_params, meta_train
from napari_agile.engine.model_file import load_model
from napari_agile.engine.network import ModelConfig, estimate_stats
from napari_agile.engine.supervised import predict_proba
from napari_agile.engine.tasks import TaskPool, TaskTransform
from napari_agile.engine.training import build_pools

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "bundled-model.toml"
#: name -> (model overrides, meta overrides, augmentation overrides); the last row is the bundled recipe
VARIANTS = {
    "maml_second_order": ({"head_init": "meta"}, {"first_order": False, "adapt_scope": "all"}, {"shuffle": None}),
    "maml_first_order": ({"head_init": "meta"}, {"first_order": True, "adapt_scope": "all"}, {"shuffle": None}),
    "proto_second_order": ({}, {"first_order": False, "adapt_scope": "all"}, {"shuffle": None}),
    "proto_first_order": ({}, {"first_order": True, "adapt_scope": "all"}, {"shuffle": None}),
    "proto_first_order_shuffle_1": ({}, {"first_order": True, "adapt_scope": "all"}, {"shuffle": 1.0}),
    "proto_first_order_shuffle_1_head_only": ({}, {"first_order": True, "adapt_scope": "head"}, {"shuffle": 1.0}),
    "proto_first_order_shuffle_1_head_only_centre_14": (
        {"centre_radius": 14},
        {"first_order": True, "adapt_scope": "head"},
        {"shuffle": 1.0},
    ),
    "proto_first_order_shuffle_1_head_only_centre_14_whiten": (
        {"centre_radius": 14, "centre_whiten": True},
        {"first_order": True, "adapt_scope": "head"},
        {"shuffle": 1.0},
    ),
    "proto_first_order_shuffle_1_head_only_centre_14_whiten_rings_2": (
        {"centre_radius": 14, "centre_whiten": True, "centre_rings": 2},
        {"first_order": True, "adapt_scope": "head"},
        {"shuffle": 1.0},
    ),
    "proto_first_order_shuffle_1_head_only_nucleus_whiten": (
        {"centre_block": "nucleus", "centre_whiten": True},
        {"first_order": True, "adapt_scope": "head"},
        {"shuffle": 1.0},
    ),
    # schedule costs of the bundled recipe: no input binning (4x the FLOPs), the paper's 12 tasks per batch
    "proto_first_order_shuffle_1_head_only_nucleus_whiten_bin_1": (
        {"centre_block": "nucleus", "centre_whiten": True, "bin": 1},
        {"first_order": True, "adapt_scope": "head"},
        {"shuffle": 1.0},
    ),
    "proto_first_order_shuffle_1_head_only_nucleus_whiten_12_tasks": (
        {"centre_block": "nucleus", "centre_whiten": True},
        {"first_order": True, "adapt_scope": "head", "tasks_per_batch": 12},
        {"shuffle": 1.0},
    ),
    "proto_first_order_head_only_centre_14_whiten": (
        {"centre_radius": 14, "centre_whiten": True},
        {"first_order": True, "adapt_scope": "head"},
        {"shuffle": None},
    ),
}


def one_step_accuracy(cfg: ModelConfig, params, meta: MetaConfig, stats, xs, ys, xq, yq) -> float:
    fast = adapt_params(cfg, params, stats, xs, ys, meta.inner_lr, meta.inner_steps, meta.adapt_scope)
    return float(np.mean((predict_proba(cfg, fast, stats, xq) >= 0.5) == yq.numpy()))


def val_shuffled(
    cfg: ModelConfig, params, meta: MetaConfig, val: TaskPool, n: int = 48, types: tuple[str, ...] | None = None
) -> float:
    """One step on 8 + 8 labels, 16 + 16 query cells, every channel order shuffled; tasks of `types` in turn
    (default: the meta types)."""
    rng, accs, types = np.random.default_rng(7), [], types or meta.meta_types
    for i in range(n):
        shuffle = TaskTransform(False, rng.permutation(len(cfg.channels)), 0, None, None, 0.0, 0.0, len(cfg.channels))
        task = val.sample_task(types[i % len(types)], 8, 16, 64, rng, shuffle)
        stats = estimate_stats(cfg, params, task.unlabelled_x)
        accs.append(
            one_step_accuracy(cfg, params, meta, stats, task.support_x, task.support_y, task.query_x, task.query_y)
        )
    return float(np.mean(accs))


def new_types(cfg: ModelConfig, params, meta: MetaConfig, data: bm.BenchData, repeats: int = 10) -> dict:
    x, types = data.pool.patches.float(), data.pool.types
    stats, rng, out = estimate_stats(cfg, params, x[data.tissue_idx]), np.random.default_rng(0), {}
    for t in bm.REAL_TYPES:
        train, test = data.tasks[t]["train"], data.tasks[t]["test"]
        accs = []
        for _ in range(repeats):
            idx = np.concatenate(
                [
                    rng.choice(train[types[train] == t], 8, replace=False),
                    rng.choice(train[types[train] != t], 8, replace=False),
                ]
            )
            accs.append(
                one_step_accuracy(
                    cfg,
                    params,
                    meta,
                    stats,
                    x[idx],
                    torch.as_tensor(types[idx] == t).long(),
                    x[test],
                    torch.as_tensor(types[test] == t).long(),
                )
            )
        out[t] = float(np.mean(accs))
    return out


def render(rows: list[dict]) -> str:
    """Markdown table of the variant rows (the last row per variant wins)."""
    last = {r["variant"]: r for r in rows}
    lines = [
        "| variant | iterations | val_shuffled (selects) | astrocyte | endothelial | seconds |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {v} | {r['iterations']} | {r['val_shuffled']:.3f} | {r['new_types']['astrocyte']:.3f} | "
        f"{r['new_types']['endothelial']:.3f} | {r['seconds']} |"
        for v, r in last.items()
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--only", nargs="*", default=list(VARIANTS))
    ap.add_argument("--out", default="meta-variants.jsonl")
    ap.add_argument("--work", default="meta-variants", help="checkpoints (a rerun resumes)")
    ap.add_argument("--holdout", choices=bm.META_TYPES, help="meta-train without this meta type and validate on it")
    ap.add_argument("--render", action="store_true", help="print the table of --out's rows and stop")
    ap.add_argument(
        "--evaluate",
        metavar="MODEL",
        nargs="?",
        const="bundled",
        help="score a saved model (default: the bundled one) the same way, without training",
    )
    args = ap.parse_args()
    if args.render:
        print(render([json.loads(line) for line in Path(args.out).read_text().splitlines()]))
        return
    config = tomllib.loads(CONFIG.read_text())
    built: dict[tuple[int, int], tuple[TaskPool, TaskPool, bm.BenchData]] = {}

    def data_for(cfg: ModelConfig) -> tuple[TaskPool, TaskPool, bm.BenchData]:
        """Training and validation pools and the new-type data, cut once per patch layout (a mask plane or not,
        binned or not)."""
        layout = (cfg.planes, cfg.input_size)
        if layout not in built:
            built[layout] = (*build_pools(config, cfg), bm.build_data(bm.BenchConfig.quick(), cfg))
        return built[layout]

    if args.evaluate:
        model = load_model(None if args.evaluate == "bundled" else args.evaluate)
        meta = MetaConfig(inner_lr=model.inner_lr, adapt_scope=model.adapt_scope)
        _, val, data = data_for(model.config)
        _write(
            args.out,
            {
                "variant": f"model {args.evaluate}",
                "iterations": model.info.get("iterations_done", "?"),
                "val_shuffled": val_shuffled(model.config, model.params, meta, val),
                "new_types": new_types(model.config, model.params, meta, data),
                "seconds": 0,
            },
        )
        return
    for name in args.only:
        model_o, meta_o, aug_o = VARIANTS[name]
        cfg = ModelConfig(**{**config["model"], **model_o})
        pool, val, data = data_for(cfg)
        aug = {**config["meta"]["augmentation"], **aug_o}
        held = {"meta_types": [t for t in bm.META_TYPES if t != args.holdout]} if args.holdout else {}
        meta = MetaConfig.from_dict(
            {
                **config["meta"],
                "augmentation": aug,
                "iterations": args.iterations,
                "tasks_per_batch": 4,
                "validate_every": 50,
                **meta_o,
                **held,
            }
        )
        label = f"{name} (without {args.holdout})" if args.holdout else name
        t0 = time.time()
        params, _ = meta_train(cfg, meta, pool, val, out_dir=Path(args.work) / label.replace(" ", "_"))
        types = (args.holdout,) if args.holdout else None
        row = {
            "variant": label,
            "iterations": args.iterations,
            "val_shuffled": val_shuffled(cfg, params, meta, val, types=types),
            "new_types": new_types(cfg, params, meta, data),
            "seconds": round(time.time() - t0),
            "torch_threads": torch.get_num_threads(),
        }
        _write(args.out, row)


def _write(path: str, row: dict) -> None:
    print(json.dumps(row), flush=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
