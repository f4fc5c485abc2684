"""One-step accuracy on tissue the models were not tuned to: other marker panels, shifted imaging, the Session loop.

Each run simulates a fresh 2048 px section (seeds 900,000+, never used for training or choices), either with the
paper's 7 named channels or with a random `MarkerPanel` of 5, 12 or 40 channels (markers shared between types,
dimmed positives, bleed-through mixes, background channels: another generator than the training tasks' panels),
at the training's domain randomisation (1.0) or far beyond it (2.5: "shifted"). A task is "is this an astrocyte /
endothelial cell?" (types no model met in meta-training) on a balanced pool of up to 300 + 300 cells of the
section. On one pool, through the public Session API, with the simulator's true types as the answers:

- `random16` / `random160`: that many random cells of the pool, one step;
- `suggest16`: one `Session.suggest(n=16)`, one step; `rounds8`: Suggest 8, answer, Adapt, Suggest 8, Adapt
  (the widget's loop); `rounds160`: ten rounds of 16, adapting after each;
- `logreg16` / `logreg160`: a logistic regression on each channel's mean in the nucleus and in a band around it
  (standardised on the pool), on the random draws' labels;
- `vanilla16`: the paper's CNN trained from scratch (100 Adam steps) on the random16 labels.

Accuracy is over every cell of the pool. Results go to OUT/runs.jsonl as they come (rerun to resume);
`--render FILE` writes the table.

    python benchmarks/panel_eval.py --model any-panel --out runs/panel-eval
    python benchmarks/panel_eval.py --model rat-brain --domains rat7 shifted7 --out runs/panel-eval
    python benchmarks/panel_eval.py --out runs/panel-eval --render docs/benchmarks-panels.md
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import napari_agile as agile
from napari_agile.detect.markers import marker_means
from napari_agile.detect.patches import extract_patches, fit_normalizer
from napari_agile.engine.network import ModelConfig, bin_patches, estimate_stats
from napari_agile.engine.supervised import predict_proba, train_supervised
from napari_agile.synth.simulator import MarkerPanel, SimParams, inner_cells, simulate_tissue

TASKS = ("astrocyte", "endothelial")
DOMAINS = {  # name: (channels in the panel, 0 for the paper's 7 named ones; domain randomisation)
    "rat7": (0, 1.0),
    "panel5": (5, 1.0),
    "panel12": (12, 1.0),
    "panel40": (40, 1.0),
    "shifted7": (0, 2.5),
    "shifted12": (12, 2.5),
}
METHODS = ("random16", "suggest16", "rounds8", "random160", "rounds160", "logreg16", "logreg160", "vanilla16")
SECTION = 2048
POOL = 300


@functools.lru_cache(maxsize=1)
def section(domain: str, seed: int) -> agile.synth.Simulation:
    """The fresh section of one run: its panel and imaging drawn from `seed`."""
    n_channels, strength = DOMAINS[domain]
    rng = np.random.default_rng([seed, 17])
    panel = MarkerPanel.random(n_channels, rng, keep=TASKS) if n_channels else None
    params = SimParams().randomized(rng, strength)
    return inner_cells(simulate_tissue((SECTION, SECTION), seed=seed, params=params, panel=panel))


def pool_cells(cells: agile.Cells, task: str, rng: np.random.Generator) -> agile.Cells:
    """A balanced pool: up to POOL cells of `task` and as many others, from `cells` (with a cell_type column)."""
    t = cells.table
    pos, neg = t.index[t.cell_type == task].to_numpy(), t.index[t.cell_type != task].to_numpy()
    n = min(POOL, len(pos), len(neg))
    return cells.subset(np.sort(np.r_[rng.choice(pos, n, replace=False), rng.choice(neg, n, replace=False)]))


def logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 300) -> np.ndarray:
    """Probabilities on every row of a standardised-feature L2 logistic regression fitted on the rows of y >= 0."""
    z = torch.as_tensor((x - x.mean(0)) / (x.std(0) + 1e-6), dtype=torch.float64)
    lab = torch.as_tensor(y)
    fit = lab >= 0
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps)

    def closure():
        opt.zero_grad()
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(z[fit] @ w + b, lab[fit].double())
            + l2 * (w**2).sum() / fit.sum()
        )
        loss.backward()
        return loss

    opt.step(closure)
    return torch.sigmoid(z @ w + b).detach().numpy()


def vanilla(tissue, cells, ids: np.ndarray, answers: np.ndarray, seed: int) -> np.ndarray:
    """The paper's CNN from scratch on (ids, answers): positive probability of every pool cell."""
    cfg = ModelConfig(channels=tuple(tissue.channel_names), head_init="meta")
    x = bin_patches(torch.from_numpy(extract_patches(tissue, cells, normalizer=fit_normalizer(tissue))), cfg.bin)
    rows = cells.table.index.get_indexer(ids)
    params = train_supervised(cfg, x[rows], torch.as_tensor(answers.astype(int)), x, steps=100, seed=seed)
    stats = estimate_stats(cfg, params, x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:256]])
    return predict_proba(cfg, params, stats, x)


def run(model_name: str, domain: str, seed: int, task: str, draw: int, rounds: str = "auto") -> dict:
    """Every method on one pool of a simulated section; accuracies by method."""
    sim = section(domain, seed)
    rng = np.random.default_rng([seed, draw, TASKS.index(task)])
    cells = pool_cells(sim.cells, task, rng)
    truth = (cells.table.cell_type == task).to_numpy()
    out = {
        "model": model_name,
        "domain": domain,
        "seed": seed,
        "task": task,
        "draw": draw,
        "rounds": rounds,
        "channels": sim.tissue.n_channels,
        "pool": len(cells),
    }
    return {**out, **evaluate(agile.load_model(model_name), sim.tissue, cells, truth, rng, seed, rounds)}


def evaluate(
    model, tissue, cells, truth: np.ndarray, rng: np.random.Generator, seed: int, rounds: str = "auto"
) -> dict:
    """Accuracy of every method of METHODS on the pool `cells` (truth: a bool per cell), the Session's later
    rounds by `rounds` (Session.suggest methods, comma-separated: rounds8.<method> and rounds160.<method> for each,
    rounds8 and rounds160 for the first; the first round always covers). 160-label methods are left out (None) on
    pools under 320 cells."""
    answer = dict(zip(cells.ids.tolist(), truth.tolist()))
    out: dict = {}
    t0 = time.time()
    sizes = (16, 160) if len(cells) >= 320 else (16,)
    draws = {k: rng.choice(cells.ids, k, replace=False) for k in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        session = agile.Session(tissue, cells, model, store=Path(tmp) / "s", seed=seed)
        out["session_s"] = round(time.time() - t0, 1)

        def answer_ids(name: str, ids) -> None:
            session.annotate(name, list(ids), [answer[i] for i in ids])
            session.adapt(name)

        for k, ids in draws.items():
            answer_ids(f"random{k}", ids)
        answer_ids("suggest16", session.suggest("suggest16", n=16))
        methods = rounds.split(",")
        for name, n_rounds, n in (("rounds8", 2, 8), ("rounds160", 10, 16))[: len(sizes)]:
            for m in methods:
                for r in range(n_rounds):
                    answer_ids(f"{name}.{m}", session.suggest(f"{name}.{m}", n=n, method="cover" if r == 0 else m))
        table = session.predict()
        for name in session.types:
            out[name] = float(np.mean((table[f"p_{name}"].to_numpy() >= 0.5) == truth))
        for name in ("rounds8", "rounds160")[: len(sizes)]:
            out[name] = out[f"{name}.{methods[0]}"]
    feats = np.concatenate(marker_means(tissue, cells, normalizer=fit_normalizer(tissue)), axis=1)
    for k, ids in draws.items():
        y = -np.ones(len(cells), int)
        rows = cells.table.index.get_indexer(ids)
        y[rows] = truth[rows]
        out[f"logreg{k}"] = float(np.mean((logistic(feats, y) >= 0.5) == truth))
    rows = cells.table.index.get_indexer(draws[16])
    out["vanilla16"] = float(np.mean((vanilla(tissue, cells, draws[16], truth[rows], seed) >= 0.5) == truth))
    out["seconds"] = round(time.time() - t0, 1)
    return {m: out.get(m) for m in (*METHODS, "session_s", "seconds")} | {k: v for k, v in out.items() if "." in k}


def render(records: list[dict], path: Path, by: tuple[str, ...] = ("model", "domain")) -> None:
    """The table: mean accuracy (± standard error over runs) per model, domain and method."""
    lines = [
        "# One step on tissue nobody tuned to: other panels, shifted imaging (simulated)",
        "",
        "Made by `python benchmarks/panel_eval.py --out runs/panel-eval --render " + str(path) + "` (see the script's "
        "docstring for the protocol). Tasks astrocyte and endothelial (new types for both models), balanced pools of "
        f"up to {POOL} + {POOL} cells of one fresh {SECTION} px section each; mean accuracy over runs ± standard error. "
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}.",
        "",
        f"| {' | '.join(by)} | runs | " + " | ".join(METHODS) + " | suggest16 - random16 |",
        "|" + "---|" * len(by) + "---|" + "---|" * (len(METHODS) + 1),
    ]
    lines += table_rows(records, ("model", "domain"))
    path.write_text("\n".join(lines) + "\n")


def table_rows(records: list[dict], by: tuple[str, ...]) -> list[str]:
    """Markdown rows: per group of `by`, each method's mean accuracy ± standard error over runs, then the mean
    difference suggest16 - random16."""
    lines = []
    for key in sorted({tuple(r[k] for k in by) for r in records}, key=str):
        rs = [r for r in records if tuple(r[k] for k in by) == key]
        cells = []
        for m in METHODS:
            v = np.array([r[m] for r in rs if r.get(m) is not None])
            cells.append(
                "-" if not len(v) else f"{v.mean():.3f} ± {v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0:.3f}"
            )
        d = np.mean([r["suggest16"] - r["random16"] for r in rs])
        lines.append(f"| {' | '.join(map(str, key))} | {len(rs)} | " + " | ".join(cells) + f" | {d:+.3f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="any-panel", help="a bundled model's name or a model file")
    ap.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=list(DOMAINS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-base", type=int, default=900_000, help="first section seed (choices: 800,000)")
    ap.add_argument("--rounds", default="auto", help="Session.suggest method of the rounds after the first")
    ap.add_argument("--draws", type=int, default=1, help="pools per section and task")
    ap.add_argument("--out", type=Path, default=Path("runs/panel-eval"))
    ap.add_argument("--by", nargs="+", default=["model", "domain"], help="table rows group runs by these keys")
    ap.add_argument("--render", type=Path, help="write the table of every run in OUT to this file")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if args.render is None or args.domains != list(DOMAINS):
        seen = {(r["model"], r["domain"], r["seed"], r["task"], r["draw"], r["rounds"]) for r in done}
        for domain in args.domains:
            for seed in range(args.seed_base, args.seed_base + args.seeds):
                for task in TASKS:
                    for draw in range(args.draws):
                        if (args.model, domain, seed, task, draw, args.rounds) in seen:
                            continue
                        record = run(args.model, domain, seed, task, draw, args.rounds)
                        print(json.dumps(record), flush=True)
                        with log.open("a") as fh:
                            fh.write(json.dumps(record) + "\n")
                        done.append(record)
    if args.render is not None:
        render(done, args.render, tuple(args.by))


if __name__ == "__main__":
    main()
