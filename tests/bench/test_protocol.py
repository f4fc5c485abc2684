import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from napari_agile.bench.protocol import METHODS, BenchConfig, BenchData, Protocol, labelled_pool, run_benchmark
from napari_agile.bench.report import centre_text, render, wall_time
from napari_agile.cli import main
from napari_agile.engine.model_file import AgileModel
from napari_agile.engine.network import ModelConfig, init_params
from napari_agile.engine.tasks import TaskPool
from napari_agile.errors import AgileInputError
from napari_agile.io.tissue import PAPER_CHANNELS
from napari_agile.synth.simulator import CELL_TYPES

TINY = BenchConfig(
    n_per_type=24,
    repeats=2,
    labels=4,
    big_labels=8,
    al_batch=2,
    steps_curve=1,
    label_curve=(4, 8),
    supervised_steps=1,
    pretrain_steps=1,
    meta_iterations=1,
    meta_fields=1,
    field=1024,
    mc_passes=3,
    extra_acquisition=("auto", "random"),
)


def test_tiny_protocol_runs_resumes_and_renders(tmp_path):
    logs = []
    results = run_benchmark(TINY, tmp_path / "run", log=logs.append)
    expected = set(METHODS) | {"agile_phase2_auto", "agile_phase2_random"}
    assert set(results["summary"]) == expected
    for s in results["summary"].values():
        assert 0 <= s["accuracy"] <= 1 and s["n"] == 4 and len(s["steps_curve"]) == 2
    assert results["summary"]["agile_phase2_160"]["n"] == 4
    assert len(results["label_curve"]["agile"]) == 2
    path = tmp_path / "run" / "results.json"
    saved = json.loads(path.read_text())
    again = run_benchmark(TINY, tmp_path / "run", log=logs.append)  # resumes: every repeat is already there
    assert again["runs"] == saved["runs"] and again["label_curve"] == saved["label_curve"]
    cut = {**saved, "runs": {k: v for k, v in saved["runs"].items() if not k.startswith("agile_phase2")}}
    del cut["config"]["label_source"]  # saved before that option existed: it ran with the simulator's types
    del cut["calls"]  # ...and before calls were timed
    del cut["label_curve"], cut["summary"], cut["label_points"]["8"]
    path.write_text(json.dumps(cut))  # as if interrupted: the later runs and points are redone, in a fresh order
    partial = tmp_path / "docs" / "partial.md"
    assert main(["benchmark", "--out", str(tmp_path / "run"), "--render", str(partial), "--no-run"]) == 0
    text = partial.read_text()
    assert "Unfinished run" in text and "| MAML (1%) |" in text and "AGILE phase II" not in text
    assert f" --out {tmp_path / 'run'} --render" in text and "(the paper's round)" in text
    resumed = run_benchmark(TINY, tmp_path / "run", log=logs.append)
    assert resumed["runs"] == saved["runs"] and resumed["label_curve"] == saved["label_curve"]
    page = render(results, tmp_path / "docs" / "bench.md").read_text()
    assert (
        "| MAML (1%) |" in page and "| AGILE phase II, covering first round (1%) |" in page and "paper accuracy" in page
    )
    assert "meta-training 1 iterations × 8 tasks" in page and "{" not in page  # every field filled in
    assert "Wall time: 1 call of the command took " in page
    assert [c["seconds"] is None for c in resumed["calls"]] == [True, False]  # the untimed calls before, then this one
    assert "calls before 2026-11-28 were not timed; the later 1 call of the command took" in wall_time(resumed["calls"])
    assert (tmp_path / "docs" / "bench-steps.png").stat().st_size > 0


def test_more_repeats_extend_a_run_and_the_page_names_its_options(tmp_path):
    two = run_benchmark(TINY, tmp_path / "run", methods=["agile_phase1"])
    three = run_benchmark(replace(TINY, repeats=3), tmp_path / "run", methods=["agile_phase1", "maml"])
    assert {k: three["runs"][k] for k in two["runs"]} == two["runs"]  # the first two repeats are kept as they were
    assert three["summary"]["agile_phase1"]["n"] == 6 and three["summary"]["maml"]["n"] == 6
    assert three["methods"] == ["agile_phase1", "maml"] and three["config"]["repeats"] == 3
    fewer = run_benchmark(TINY, tmp_path / "run", methods=["maml"])  # fewer repeats: nothing redone or dropped
    assert fewer["runs"] == three["runs"] and fewer["config"]["repeats"] == 3
    page = render(fewer, tmp_path / "bench.md", "runs/x").read_text()
    assert "`napari-agile benchmark --repeats 3 --methods agile_phase1 maml --out runs/x --render" in page
    everything = run_benchmark(replace(TINY, al_spread=1), tmp_path / "run")
    page = render(everything, tmp_path / "b.md").read_text()
    assert everything["methods"] is None and "--methods" not in page
    assert "up to 3 repeats per task" in page  # two rows hold 3 repeats, the others 2


def test_bad_repeats_are_refused_with_what_to_give(tmp_path, capsys):
    assert main(["benchmark", "--repeats", "1", "--out", str(tmp_path / "bad")]) != 0
    assert "--repeats 1: use 2 or more" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_a_folder_of_another_config_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"config": {"repeats": 99}}))
    with pytest.raises(ValueError, match="another benchmark config"):
        run_benchmark(TINY, run)
    before = asdict(replace(TINY, centre_block="rings"))
    del before["centre_block"]  # saved before the option existed, when every run read rings
    (run / "results.json").write_text(json.dumps({"config": before}))
    with pytest.raises(ValueError, match="another benchmark config"):
        run_benchmark(replace(TINY, centre_block="nucleus"), run)


def test_reports_name_the_centre_block_as_the_model_card_does():
    rings = {"centre_radius": 14, "centre_rings": 2, "centre_whiten": True}  # an old results file: no centre_block
    assert centre_text(rings) == (
        " + centre intensities within 14 px of the centre in 2 rings of equal width (whitened on the section)"
    )
    nucleus = ModelConfig(channels=PAPER_CHANNELS, centre_block="nucleus", centre_radius=14)
    assert (
        centre_text({"centre_block": "nucleus", "centre_radius": 14}) == f" + centre intensities {nucleus.centre_words}"
    )
    assert "nucleus mask" in nucleus.centre_words and centre_text({}) == ""


def test_lab_labels_pool_holds_every_type_from_the_rule():
    bench = replace(TINY, n_per_type=2, field=256, label_source="lab")
    pool = labelled_pool(bench, ModelConfig(channels=PAPER_CHANNELS))
    counts = {t: int(np.sum(pool.types == t)) for t in CELL_TYPES}
    assert set(pool.types) == set(CELL_TYPES) and min(counts.values()) >= 2
    # 256 px fields hold about 8 whole-patch cells: the rule keeps the brightest one per marker at most
    assert len(pool) <= 5 * (pool.fields.max() + 1)
    with pytest.raises(AgileInputError, match="fewer cells per type"):  # refused after 20 fields, not hours
        labelled_pool(replace(bench, n_per_type=100_000), ModelConfig(channels=PAPER_CHANNELS))


def test_methods_runs_only_the_rows_named(tmp_path):
    with pytest.raises(AgileInputError, match="Unknown benchmark method.*choose among vanilla_limit"):
        run_benchmark(TINY, tmp_path / "bad", methods=["phase_two"])
    assert not (tmp_path / "bad" / "results.json").exists()
    assert main(["benchmark", "--spread", "0", "--out", str(tmp_path / "bad")]) != 0
    assert not (tmp_path / "bad" / "results.json").exists()
    results = run_benchmark(TINY, tmp_path / "run", methods=["agile_phase1"])
    assert set(results["summary"]) == {"agile_phase1"} and "label_curve" not in results
    curve = run_benchmark(TINY, tmp_path / "run", methods=["label_curve"])["label_curve"]
    assert curve["labels"] == list(TINY.label_curve) and len(curve["agile"]) == len(curve["vanilla"]) == 2


def test_head_only_steps_are_scored_on_the_shared_test_features():
    cfg = ModelConfig(channels=PAPER_CHANNELS, centre_radius=14, head_init="meta")
    types = np.array(["astrocyte", "neuron"] * 20)
    pool = TaskPool(torch.rand(40, cfg.planes, cfg.input_size, cfg.input_size).half(), types, np.zeros(40, int))
    data = BenchData(pool, np.arange(20), {"astrocyte": {"train": np.arange(20), "test": np.arange(20, 40)}})
    model = AgileModel(cfg, init_params(cfg, seed=3), inner_lr=0.5, adapt_scope="head")
    proto = Protocol(TINY, cfg, data, {"agile": model})
    params, stats = proto.adapt(model, np.arange(8), "astrocyte", steps=2), proto.stats(model.params)
    shared = proto.test_proba(params, "astrocyte", stats, proto.test_features(model, "astrocyte"))
    assert np.allclose(shared, proto.test_proba(params, "astrocyte", stats), atol=1e-5)
    assert not np.allclose(shared, proto.test_proba(model.params, "astrocyte", stats), atol=1e-3)  # the step moved it
    assert proto.test_features(AgileModel(cfg, model.params, 0.5, "all"), "astrocyte") is None  # the trunk moves


def test_page_commands_name_the_spread_where_it_is_not_the_modes_default():
    from napari_agile.bench.report import command_options

    def options(bench):
        return command_options({"config": asdict(bench)})

    assert options(BenchConfig.quick()) == " --quick"  # quick asks the Session's spread rounds
    assert options(replace(BenchConfig.quick(), al_spread=1)) == " --quick --spread 1"
    assert options(BenchConfig()) == "" and options(replace(BenchConfig(), al_spread=9)) == " --spread 9"
