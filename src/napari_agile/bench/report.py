"""Render benchmark results (results.json) as markdown with Fig. 3's two panels as PNG plots beside it."""

from __future__ import annotations

from pathlib import Path

from napari_agile.engine.network import describe_centre

#: Rows of Table 2 in the paper's order, with the paper's accuracy for comparison.
PAPER_ROWS = (
    ("vanilla_limit", "Vanilla limit (1%)", 0.637),
    ("vanilla_full", "Vanilla full (60%)", 0.950),
    ("transfer", "Transfer (1%)", 0.449),
    ("maml", "MAML (1%)", 0.409),
    ("agile_phase1", "AGILE phase I (1%)", 0.791),
    ("agile_phase2", "AGILE phase II (1%)", 0.902),
    ("agile_phase2_160", "AGILE phase II (10%)", 0.950),
    ("agile_phase2_auto", "AGILE phase II, covering first round (1%)", None),
    ("agile_phase2_bald", "AGILE phase II, BALD (1%)", None),
    ("agile_phase2_random", "AGILE phase II loop, random picks (1%)", None),
)

LAB = (
    "the lab's weak labels, as in the paper (napari_agile.bench.weak_labels: the brightest 5 % of cells per marker "
    "inside the nucleus box, each typed by its brightest marker; docs/simulator.md)"
)


def centre_text(c: dict) -> str:
    """How the benchmark's network reads the centre cell, in words ("" for the paper's plain network)."""
    where = describe_centre(
        c.get("centre_block", "rings"), c.get("centre_radius", 0), c.get("centre_rings", 1), c.get("ring", 0)
    )
    if not where:
        return ""
    return f" + centre intensities {where}" + (" (whitened on the section)" if c.get("centre_whiten") else "")


def command_options(results: dict) -> str:
    """The `napari-agile benchmark` options that reproduce `results` (quick or full, repeats, label source, centre
    block, spread, the rows asked for)."""
    from napari_agile.bench.protocol import BenchConfig

    c = results["config"]
    quick = BenchConfig.quick()
    is_quick = c["n_per_type"] == quick.n_per_type  # quick ran 300 meta-iterations before 2026-11-27 22:00
    default = quick if is_quick else BenchConfig()
    methods = results.get("methods")
    return "".join(
        [
            " --quick" if is_quick else "",
            f" --repeats {c['repeats']}" if c["repeats"] != default.repeats else "",
            " --label-source lab" if c.get("label_source") == "lab" else "",
            f" --centre-block {block}" if (block := c.get("centre_block", "rings")) != BenchConfig.centre_block else "",
            f" --spread {spread}" if (spread := c.get("al_spread", 1)) != default.al_spread else "",
            f" --methods {' '.join(methods)}" if methods else "",
        ]
    )


def _uneven(results: dict) -> bool:
    """True when the rows hold different numbers of runs (a folder extended with more repeats for some rows)."""
    return len({s["n"] for s in results["summary"].values()}) > 1


def table2(summary: dict) -> str:
    """Table 2 as markdown: precision, recall, F1, accuracy ± std, 95% CI, and the paper's accuracy."""
    lines = [
        "| method | precision | recall | F1 | accuracy (± std) | CI95 | n | paper accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, label, paper in PAPER_ROWS:
        if key not in summary:
            continue
        s = summary[key]
        lines.append(
            f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | "
            f"{s['accuracy']:.3f} (±{s['std']:.3f}) | {s['ci95'][0]:.3f} - {s['ci95'][1]:.3f} | {s['n']} | "
            f"{'' if paper is None else f'{paper:.3f}'} |"
        )
    return "\n".join(lines)


def _plots(results: dict, folder: Path, stem: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key, label, _ in PAPER_ROWS[:7]:
        if key in results["summary"]:
            curve = results["summary"][key]["steps_curve"]
            ax.plot(range(len(curve)), curve, marker="o", ms=3, label=label)
    ax.set(xlabel="gradient steps on the new task", ylabel="test accuracy", title="Fig. 3(a): adaptation")
    ax.legend(fontsize=7)
    fig.tight_layout()
    names.append(f"{stem}-steps.png")
    fig.savefig(folder / names[-1], dpi=120)
    lc = results.get("label_curve")
    if lc is None:  # an unfinished run: the label curve comes last
        plt.close("all")
        return names
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(lc["labels"], lc["agile"], marker="o", label="AGILE (entropy, 1 step)")
    ax.plot(lc["labels"], lc["vanilla"], marker="s", label="Vanilla (from scratch, 100 steps)")
    ax.set(xscale="log", xlabel="labelled cells", ylabel="test accuracy", title="Fig. 3(b): labels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    names.append(f"{stem}-labels.png")
    fig.savefig(folder / names[-1], dpi=120)
    plt.close("all")
    return names


def wall_time(calls: list[dict]) -> str:
    """What the run cost: its wall time over the calls that made it (those timed), and how busy the cores were."""
    timed = [c for c in calls if c["seconds"] is not None]
    total = sum(c["seconds"] for c in timed) / 60
    loads = ", ".join(f"{c['load_at_start']:.1f}" for c in timed)
    earlier = "calls before 2026-11-28 were not timed; the later " if len(timed) < len(calls) else ""
    return (
        f"Wall time: {earlier}{len(timed)} call{'s' if len(timed) > 1 else ''} of the command took {total:.1f} min "
        f"(load average over the minute before each: {loads}; 1.0 is one core kept busy by other work)."
    )


def render(results: dict, path: str | Path, out: str | Path | None = None) -> Path:
    """Write `path` (markdown) and its PNG plots; every number comes from `results` (read from the folder `out`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plots = _plots(results, path.parent, path.stem)
    m, c = results["machine"], results["config"]
    lc = results.get("label_curve")
    lab = c.get("label_source") == "lab"
    spread = c.get("al_spread", 1)
    options = command_options(results) + (f" --out {out}" if out else "")
    curve = (
        [
            "| labels | " + " | ".join(str(n) for n in lc["labels"]) + " |",
            "|---|" + "---|" * len(lc["labels"]),
            "| AGILE | " + " | ".join(f"{a:.3f}" for a in lc["agile"]) + " |",
            "| Vanilla | " + " | ".join(f"{a:.3f}" for a in lc["vanilla"]) + " |",
        ]
        if lc
        else [
            f"**Unfinished run** (rendered with `--no-run`): each row has the runs done so far (n, of "
            f"{2 * c['repeats']}), and Fig. 3(b), which comes last, is not run yet."
        ]
    )
    text = "\n".join(
        [
            "# Reproducing the AGILE paper on simulated tissue",
            "",
            f"Produced by `napari-agile benchmark{options} --render {path}{'' if lc else ' --no-run'}` on {m['date']} "
            f"({m['cpu']}, {m['cores']} cores, torch {m['torch']}, seed {c['seed']}).",
            f"Cell types: {LAB if lab else 'the simulator' + chr(39) + 's truth'}.",
            f"Protocol: {c['n_per_type']} cells per type, real tasks astrocyte and endothelial, 60/40 pool/test split, "
            f"{'up to ' if _uneven(results) else ''}{c['repeats']} repeats per task (n in the table counts a row's runs "
            f"over both tasks); meta-training {c['meta_iterations']} iterations × {c.get('meta_tasks', 8)} tasks on separate fields "
            "(meta types neuron, oligodendrocyte, microglia); learner: "
            f"{'class-prototype' if c.get('head_init') == 'prototypes' else 'meta-learned'} dense layer, "
            f"{'head-only' if c.get('adapt_scope') == 'head' else 'whole-network'} step, "
            f"{'first' if c.get('first_order', False) else 'second'}-order; network: the paper's"
            f"{centre_text(c)}, "
            "shared by every method; MAML is the same learner without task augmentation (docs/method.md); "
            + (
                "Transfer pre-trains on the meta-training fields; "
                if c.get("protocol", 1) >= 2
                else "Transfer pre-trained on the benchmark's own cells (protocol 1; since replaced by the meta-training "
                "fields); "
            )
            + (
                "each active round asks the n most uncertain cells (the paper's round)."
                if spread == 1
                else f"each active round asks the n cells covering the {spread}·n most uncertain (the Session's spread round)."
            ),
            *([wall_time(results["calls"])] if results.get("calls") else []),
            "",
            "## Table 2",
            "",
            table2(results["summary"]),
            "",
            "## Fig. 3",
            "",
            *[f"![{p}]({p})" for p in plots],
            "",
            *curve,
            "",
        ]
    )
    path.write_text(text)
    return path
