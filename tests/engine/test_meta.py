import json

import numpy as np
import pytest
import torch

from napari_agile.engine.meta import MetaConfig, meta_train, validate
from napari_agile.engine.network import ModelConfig
from napari_agile.engine.tasks import Augmentation, TaskPool
from napari_agile.errors import AgileInputError

TYPES = np.array(["neuron", "astrocyte", "oligodendrocyte", "microglia", "endothelial"])
CFG = ModelConfig(channels=tuple("abcdefg"), patch_size=32, bin=1, head_init="meta")  # the paper's MAML


def _pool(seed: int, n: int = 400) -> TaskPool:
    """Toy tissue: each type lights up its own channel in the patch centre, on a noisy background."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 5, n)
    x = rng.random((n, 7, 32, 32)).astype(np.float32) * 0.5
    x[np.arange(n), 2 + t, 12:20, 12:20] += 1.0
    return TaskPool(torch.from_numpy(x).half(), TYPES[t], np.arange(n) % 2)


META = MetaConfig(
    iterations=6,
    tasks_per_batch=2,
    k_max=4,
    n_query=6,
    n_unlabelled=16,
    augmentation=Augmentation(p=0.5, intensity=0.2, blur=0.5, noise=0.02),
    checkpoint_seconds=0.0,
    validate_every=3,
    validate_tasks=3,
)


#: devices this machine has for meta-training (a GPU machine runs the CUDA case too)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_interrupted_meta_training_resumes_exactly(tmp_path, device):
    pool = _pool(0)
    straight, hist = meta_train(CFG, META, pool, pool, tmp_path / "a", device=device)
    calls = iter(range(100))
    stop_after_3 = lambda: next(calls) >= 3  # noqa: E731  (cancel like the GUI's button would)
    _, part = meta_train(CFG, META, pool, pool, tmp_path / "b", should_stop=stop_after_3, device=device)
    assert len(part) == 3
    saved = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert {v.device.type for v in saved["params"].values()} == {"cpu"}  # a checkpoint resumes on any device
    resumed, hist_b = meta_train(CFG, META, pool, pool, tmp_path / "b", device=device)
    assert len(hist_b) == 6 and hist_b == hist
    assert all(torch.equal(straight[k], resumed[k]) and resumed[k].device.type == "cpu" for k in straight)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_a_missing_gpu_is_a_clear_error():
    with pytest.raises(AgileInputError, match="sees no CUDA GPU"):
        meta_train(CFG, META, _pool(0), device="cuda")


def test_resuming_with_another_config_is_refused(tmp_path):
    pool = _pool(0)
    meta_train(CFG, META, pool, None, tmp_path, should_stop=lambda: True)
    other = MetaConfig(**{**META.__dict__, "inner_lr": 0.5})
    with pytest.raises(AgileInputError, match="another meta-training config"):
        meta_train(CFG, other, pool, None, tmp_path)
    wider = ModelConfig(**{**CFG.__dict__, "dropout": 0.3})
    with pytest.raises(AgileInputError, match=r"another network \(dropout differ\)"):
        meta_train(wider, META, pool, None, tmp_path)


def test_a_checkpoint_from_before_a_config_field_existed_resumes(tmp_path):
    # Augmentation.flip / .rotate came after runs whose checkpoints lack them; their defaults are the old behaviour
    pool = _pool(0)
    meta_train(CFG, META, pool, None, tmp_path, should_stop=lambda: True)
    blob = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    old = json.loads(blob["meta"])
    del old["augmentation"]["flip"], old["augmentation"]["rotate"]
    torch.save({**blob, "meta": json.dumps(old)}, tmp_path / "checkpoint.pt")
    _, hist = meta_train(CFG, META, pool, None, tmp_path)
    assert len(hist) == META.iterations
    torch.save({**blob, "meta": json.dumps({**old, "retired_field": 1})}, tmp_path / "checkpoint.pt")
    with pytest.raises(AgileInputError, match="another version's meta-training config"):
        meta_train(CFG, META, pool, None, tmp_path)


def test_meta_training_learns_toy_tasks_that_a_fresh_network_cannot_do_in_one_step():
    pool, val = _pool(1, 600), _pool(2, 300)
    meta = MetaConfig(
        iterations=60,
        tasks_per_batch=4,
        k_max=4,
        n_query=8,
        n_unlabelled=32,
        first_order=False,
        adapt_scope="all",
        augmentation=Augmentation(p=0.5),
        validate_tasks=12,
        seed=3,
    )
    from napari_agile.engine.network import init_params

    before = validate(CFG, init_params(CFG, 3), val, meta)
    params, _ = meta_train(CFG, meta, pool)
    after = validate(CFG, params, val, meta)
    assert after > before + 0.15 and after > 0.75


PROTO = ModelConfig(channels=tuple("abcdefg"), patch_size=32, bin=1, head_init="prototypes")


def test_prototype_head_separates_the_support_before_any_gradient_step():
    from napari_agile.engine.meta import adapt_params
    from napari_agile.engine.network import estimate_stats, forward, init_params

    pool = _pool(4)
    pos, neg = (np.flatnonzero(pool.types == t)[:6] for t in ("astrocyte", "neuron"))
    x = pool.patches[np.concatenate([pos, neg])].float()
    y = torch.tensor([1] * 6 + [0] * 6)
    params = init_params(PROTO, 0)
    stats = estimate_stats(PROTO, params, pool.patches[:64].float())
    learned = forward(PROTO, adapt_params(CFG, params, stats, x, y, lr=0.01, steps=0), x, stats, mc=False)
    proto = forward(PROTO, adapt_params(PROTO, params, stats, x, y, lr=0.01, steps=0), x, stats, mc=False)
    assert (proto.argmax(1) == y).all()
    assert not (learned.argmax(1) == y).all()  # the random dense layer alone does not


def test_first_order_meta_training_with_prototype_heads_runs_and_keeps_the_tasks_solved():
    """First-order MAML reaches the trunk through the prototypes (it used to crash on a freed graph).

    Prototypes of a random network already solve most toy tasks (0.92); meta-training must not lose that.
    """
    pool, val = _pool(1, 600), _pool(2, 300)
    meta = MetaConfig(
        iterations=40,
        tasks_per_batch=4,
        k_max=4,
        n_query=8,
        n_unlabelled=32,
        first_order=True,
        augmentation=Augmentation(p=0.5),
        validate_tasks=12,
        seed=3,
    )
    from napari_agile.engine.network import init_params

    before = validate(PROTO, init_params(PROTO, 3), val, meta)
    params, _ = meta_train(PROTO, meta, pool)
    after = validate(PROTO, params, val, meta)
    assert before > 0.85 and after > 0.8
