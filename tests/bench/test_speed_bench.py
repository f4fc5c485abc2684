"""benchmarks/speed.py runs end to end at toy sizes (structure, not timings), so the script cannot rot."""

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_agile.engine.network import ModelConfig, estimate_stats, forward, init_params
from napari_agile.io.tissue import PAPER_CHANNELS
from napari_agile.synth.simulator import simulate_tissue

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py"
_spec = importlib.util.spec_from_file_location("speed_bench", _PATH)
speed = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = speed  # dataclasses look their module up there
_spec.loader.exec_module(speed)

TINY = replace(
    speed.Sizes.quick(),
    infer_patches=8,
    baseline_patches=4,
    batch_sizes=(4,),
    mc_cells=16,
    mc_full_cells=4,
    mc_passes=3,
    session_field=384,
    session_labels=4,
    meta_k_max=1,
    meta_n_query=1,
)


def test_gflop_count_matches_hand_count_and_binning_quarters_it():
    binned, full = ModelConfig(channels=PAPER_CHANNELS), ModelConfig(channels=PAPER_CHANNELS, bin=1)
    macs = 50 * 50 * 32 * 7 * 9 + 25 * 25 * 32 * 32 * 9 + 12 * 12 * 32 * 32 * 9 + 6 * 6 * 32 * 32 * 9 + 288 * 2
    assert speed.gflop_per_patch(binned) == pytest.approx(2 * macs / 1e9)
    assert 3.9 < speed.gflop_per_patch(full) / speed.gflop_per_patch(binned) < 4.1


def test_plain_baseline_computes_what_the_engine_does():
    cfg = ModelConfig(channels=PAPER_CHANNELS, head_init="meta")
    params, x = init_params(cfg, seed=1), torch.rand(6, 7, 50, 50)
    stats = estimate_stats(cfg, params, x)
    with torch.no_grad():
        assert torch.allclose(
            speed.plain_module(cfg, params, stats)(x), forward(cfg, params, x, stats, mc=False), atol=1e-5
        )


def test_inference_and_mc_sections_report_every_variant(tmp_path):
    report = speed.run(TINY, only={"inference", "mc"})
    rows = report["inference"]["rows"]
    assert rows[0]["variant"].startswith("baseline") and rows[0]["speedup"] == pytest.approx(1.0)
    assert {r["batch"] for r in rows if r["variant"].startswith("as used")} >= {4, report["inference"]["default_batch"]}
    assert all(r["patches_per_s"] > 0 and 0 < r["peak_fraction"] for r in rows)
    assert all(r["peak_mb"] >= 0 for r in rows if "compile" not in r["variant"])  # memory of each variant, MB
    mc = report["mc"]
    assert mc["cached_peak_mb"] >= 0 and "memory_pass_error" not in report  # filled in from the memory pass
    assert mc["full_scaled_s"] == pytest.approx(mc["full_measured_s"] * 16 / 4)
    text = speed.markdown(report)
    assert "## 1. CNN inference" in text and "## 2. MC-dropout" in text and "## 3." not in text
    json.dumps(report)  # JSON-ready


def test_session_and_meta_sections_run_through_the_real_api(tmp_path):
    report = speed.run(TINY, only={"session", "meta"})
    loop, big = report["session"]["adapt_predict"], report["session"]["suggest"]
    assert big["cells"] == 2 * loop["cells"]  # the big field is tiles of the small one
    assert loop["adapt_predict_s"] > 0 and big["suggest_s"] > 0 and big["predict_cells_per_s"] > 0
    assert [(r["recipe"], r["tasks"], r["order"]) for r in report["meta"]["rows"]] == [
        ("bundled", 2, "first"),
        ("bundled", 2, "second"),
        ("paper", 2, "first"),
        ("paper", 2, "second"),
    ]
    assert loop["adapt_predict_peak_mb"] >= 0 and big["suggest_peak_mb"] >= 0
    assert big["new_section"]["cells"] > 0 and big["new_section"]["total_s"] > big["new_section"]["detect_s"] > 0
    assert all(r["peak_mb"] >= 0 for r in report["meta"]["rows"])
    assert "## 4. Meta-iteration" in speed.markdown(report) and "| peak MB |" in speed.markdown(report)


def test_tiled_field_shifts_cells_and_mask_consistently():
    sim = simulate_tissue((128, 128), seed=3)
    big = speed.tiled(sim, 2, 3)
    assert big.tissue.shape == (256, 384) and len(big.cells) == 6 * len(sim.cells)
    last = big.cells.table.iloc[-1]
    assert big.cells.labels[int(round(last.y)), int(round(last.x))] in (0, last.id)
    assert set(np.unique(big.cells.labels)) - {0} <= set(big.cells.ids)


def test_field_worker_measures_detection_and_extraction(capsys):
    speed.main(["--_field", "128", "128"])
    out = json.loads(capsys.readouterr().out)
    assert out["size"] == 128 and out["detect"]["count"] == out["extract"]["count"] > 0
    assert out["detect"]["per_s"] > 0 and out["field_mb"] == pytest.approx(7 * 128 * 128 * 2 / 2**20)


def test_memory_pass_figures_land_where_the_timing_pass_left_nan():
    timing = {
        "a": {"rows": [{"s": 1.0, "peak_mb": float("nan")}, {"s": 2.0, "peak_mb": float("nan")}]},
        "b": {"t": 3.0, "cached_peak_mb": float("nan")},
    }
    memory = {
        "a": {"rows": [{"s": 9.0, "peak_mb": 10.0}, {"s": 9.0, "peak_mb": 20.0}]},
        "b": {"t": 9.0, "cached_peak_mb": 30.0},
        "fixed_mmap_threshold": True,
    }
    speed._fill_peaks(timing, memory)
    assert timing == {
        "a": {"rows": [{"s": 1.0, "peak_mb": 10.0}, {"s": 2.0, "peak_mb": 20.0}]},
        "b": {"t": 3.0, "cached_peak_mb": 30.0},
    }  # timings kept, only memory copied
