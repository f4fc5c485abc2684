"""MAML meta-training with task augmentation (AGILE phase I); resumable, first- or second-order.

The inner update `adapt_params` is the same function the Session uses to adapt to a user's answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_agile.engine.device import pick_device
from napari_agile.engine.network import (
    ModelConfig,
    Params,
    estimate_stats,
    features,
    forward,
    head,
    head_keys,
    init_params,
    newton_head,
    prototype_head,
)
from napari_agile.engine.tasks import Augmentation, PanelAugmentation, PanelDraw, Task, TaskPool, TaskTransform
from napari_agile.errors import AgileInputError
from napari_agile.io.tissue import nuclear_flags

#: what adaptation may change: the dense layer only, or every weight
ADAPT_SCOPES = ("head", "all")


def check_scope(scope: str) -> None:
    """A clear error for an adaptation scope other than ADAPT_SCOPES (no silent fallback to the head)."""
    if scope not in ADAPT_SCOPES:
        raise AgileInputError(f"adapt_scope {scope!r}: use 'head' (the dense layer only) or 'all' (every weight).")


@dataclass(frozen=True)
class MetaConfig:
    """Meta-training schedule; defaults are the bundled model's (configs/bundled-model.toml), except the
    augmentation, whose default is the paper's three (the config adds shuffle on every task and intensity)."""

    meta_types: tuple[str, ...] = ("neuron", "oligodendrocyte", "microglia")
    iterations: int = 3000
    tasks_per_batch: int = 8  # paper: 12
    k_max: int = 8  # support size per class drawn from 1..k_max (the paper's K~)
    n_query: int = 16  # query cells per class
    n_unlabelled: int = 64  # cells of the task's field that set batch-norm statistics
    inner_lr: float = 0.01
    meta_lr: float = 0.001
    inner_steps: int = 1  # the paper's Z
    first_order: bool = True  # with prototype heads first-order learns as well as second-order (docs/method.md)
    adapt_scope: str = "head"  # "head" (dense layer only; the bundled model) or "all" (the paper)
    augmentation: Augmentation = field(default_factory=Augmentation)
    panel: PanelAugmentation | None = None  # per-channel models: a random marker panel per task (None: the pool's)
    seed: int = 0
    checkpoint_seconds: float = 180.0
    validate_every: int = 100
    validate_tasks: int = 24

    def __post_init__(self) -> None:
        check_scope(self.adapt_scope)

    def to_dict(self) -> dict:
        """JSON-ready form (checkpoints and model files record the recipe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MetaConfig:
        """The config `to_dict` (or a TOML [meta] section) describes."""
        d = dict(d)
        if "augmentation" in d:
            d["augmentation"] = Augmentation(**d["augmentation"])
        if d.get("panel") is not None:
            d["panel"] = PanelAugmentation(**d["panel"])
        if "meta_types" in d:
            d["meta_types"] = tuple(d["meta_types"])
        return cls(**d)


def adapt_params(
    cfg: ModelConfig,
    params: Params,
    stats: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    steps: int = 1,
    scope: str = "all",
    create_graph: bool = False,
) -> Params:
    """`steps` plain gradient steps on cross-entropy of (x, y) from `params` (MAML's inner loop).

    `create_graph` keeps the graph for second-order MAML; `scope='head'` updates the dense layer only.
    With `cfg.head_init` "prototypes" the dense layer first gains the support's class prototypes; with "newton" it
    first takes one regularised Newton step on the support (`newton_head`).
    """
    keys = list(params) if scope == "all" else head_keys(params)
    params = {k: v if v.requires_grad or k not in keys else v.detach().requires_grad_(True) for k, v in params.items()}
    from_support = cfg.head_init != "meta"  # prototypes or a Newton step start the dense layer from the support
    # the support's features stay put while only the dense layer moves, and dropout in the head draws nothing
    # in the trunk: compute them once for the head's start and every step
    fixed = scope == "head"
    feats = features(cfg, params, x, stats) if from_support or fixed else None
    if from_support:
        assert feats is not None
        params = (newton_head if cfg.head_init == "newton" else prototype_head)(cfg, params, feats, y)
    for _ in range(steps):
        logits = head(cfg, params, feats) if fixed and feats is not None else forward(cfg, params, x, stats)
        loss = F.cross_entropy(logits, y)
        # the head's start's graph must outlive the step: the query loss reaches the trunk through it
        grads = torch.autograd.grad(
            loss, [params[k] for k in keys], create_graph=create_graph, retain_graph=create_graph or from_support
        )
        params = dict(params)
        for k, g in zip(keys, grads):
            params[k] = params[k] - lr * g
    return params


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def episode_loss(
    cfg: ModelConfig, params: Params, task: Task, meta: MetaConfig, second_order: bool
) -> tuple[torch.Tensor, float]:
    """Query loss and accuracy after adapting `params` on the task's support set."""
    cfg = task.config(cfg)
    stats = estimate_stats(cfg, {k: v.detach() for k, v in params.items()}, task.unlabelled_x)
    fast = adapt_params(
        cfg,
        params,
        stats,
        task.support_x,
        task.support_y,
        meta.inner_lr,
        meta.inner_steps,
        meta.adapt_scope,
        create_graph=second_order,
    )
    logits = forward(cfg, fast, task.query_x, stats)
    return F.cross_entropy(logits, task.query_y), _accuracy(logits, task.query_y)


#: Validation episodes: channels always shuffled, no other augmentation.
VALIDATION = Augmentation(p=0.0, shuffle=1.0)


def draw_task(
    pool: TaskPool,
    meta: MetaConfig,
    cell_type: str,
    rng: np.random.Generator,
    gen: torch.Generator,
    *,
    n_channels: int,
    augment: Augmentation | None = None,
    k_support: int | None = None,
) -> Task:
    """One episode: K~ in 1..k_max per class, the task's transform (and with `meta.panel`, its marker panel) drawn
    once for all its patches.

    The first `n_channels` planes are the marker channels, which the transform permutes and distorts; later planes
    (a nucleus mask) are only rotated. `augment` defaults to the config's task augmentation.
    """
    k = int(rng.integers(1, meta.k_max + 1)) if k_support is None else k_support
    aug = meta.augmentation if augment is None else augment
    panel = None
    if meta.panel is not None:
        panel = PanelDraw.draw(
            meta.panel, pool.channels, nuclear_flags(pool.channels), pool.markers.get(cell_type), rng
        )
        n_channels = len(panel.recipes)
    transform = TaskTransform.draw(aug, n_channels, rng)
    return pool.sample_task(cell_type, k, meta.n_query, meta.n_unlabelled, rng, transform, gen, panel)


def validate(cfg: ModelConfig, params: Params, pool: TaskPool, meta: MetaConfig, seed: int = 12345) -> float:
    """Mean query accuracy after one inner update on fixed episodes of `pool`'s meta types.

    Each episode's channels are shuffled (nothing else): a network that memorised which channel marks which
    meta type gains nothing, one that learned to find the marker from the support does.
    """
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    device = next(iter(params.values())).device
    accs = []
    for i in range(meta.validate_tasks):
        cell_type = meta.meta_types[i % len(meta.meta_types)]
        task = draw_task(
            pool,
            meta,
            cell_type,
            rng,
            gen,
            augment=VALIDATION,
            k_support=meta.k_max,
            n_channels=len(pool.channels or cfg.channels),
        ).to(device)
        bound = task.config(cfg)
        stats = estimate_stats(bound, params, task.unlabelled_x)
        with torch.enable_grad():
            fast = adapt_params(
                bound, params, stats, task.support_x, task.support_y, meta.inner_lr, meta.inner_steps, meta.adapt_scope
            )
        with torch.no_grad():
            accs.append(_accuracy(forward(bound, fast, task.query_x, stats, mc=False), task.query_y))
    return float(np.mean(accs))


@dataclass
class MetaState:
    """Everything needed to resume meta-training exactly where it stopped."""

    params: Params
    optimizer: torch.optim.Optimizer
    iteration: int
    rng: np.random.Generator
    gen: torch.Generator
    history: list[dict]


def _save_checkpoint(path: Path, state: MetaState, meta: MetaConfig, cfg: ModelConfig) -> None:
    device = next(iter(state.params.values())).device
    blob = {
        "params": {k: v.detach().cpu() for k, v in state.params.items()},
        "optimizer": state.optimizer.state_dict(),
        "iteration": state.iteration,
        "numpy_rng": json.dumps(state.rng.bit_generator.state),
        "torch_gen": state.gen.get_state(),
        "torch_global": torch.get_rng_state(),
        # dropout on a GPU draws from that device's generator: kept too, so a GPU run resumes exactly
        **({"cuda_global": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
        "history": json.dumps(state.history),
        "meta": json.dumps(meta.to_dict()),
        "model": json.dumps(cfg.to_dict()),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)  # atomic: an interruption never leaves a half-written checkpoint


def _new_state(cfg: ModelConfig, meta: MetaConfig, init: Params | None, device: torch.device) -> MetaState:
    start = init or init_params(cfg, meta.seed)
    params = {k: v.detach().to(device, copy=True).requires_grad_(True) for k, v in start.items()}
    opt = torch.optim.Adam(params.values(), lr=meta.meta_lr)
    gen = torch.Generator().manual_seed(meta.seed)
    torch.manual_seed(meta.seed)
    return MetaState(params, opt, 0, np.random.default_rng(meta.seed), gen, [])


def _schedule_free(meta: dict) -> dict:
    """The parts of a config a resumed run must share (the length and bookkeeping may change: extend a run)."""
    return {k: v for k, v in meta.items() if k not in ("iterations", "checkpoint_seconds", "validate_every")}


def _read_checkpoint(path: Path) -> dict:
    """The saved blob, or a clear error when the file is cut off or damaged."""
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")  # never unpickles code
    except Exception as err:  # torch raises many types for broken files (unpickling, zip, EOF)
        raise AgileInputError(
            f"{path} is damaged and cannot be resumed from ({str(err)[:160]}): delete it to "
            "start this meta-training again from the beginning, or restore a copy."
        ) from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(blob, dict) or k not in blob]
    if missing:
        raise AgileInputError(
            f"{path} is damaged (it lacks {missing}): delete it to start this meta-training "
            "again from the beginning, or restore a copy."
        )
    return blob


#: what every checkpoint holds (`_save_checkpoint`)
CHECKPOINT_KEYS = ("params", "optimizer", "iteration", "numpy_rng", "torch_gen", "torch_global", "history", "meta")


def _load_checkpoint(path: Path, cfg: ModelConfig, meta: MetaConfig, device: torch.device) -> MetaState:
    blob = _read_checkpoint(path)
    try:  # fields added since it was written take their defaults, which keep the older behaviour
        saved_meta = MetaConfig.from_dict(json.loads(blob["meta"])).to_dict()
    except TypeError as err:
        raise AgileInputError(f"{path} was written by another version's meta-training config ({err}).") from None
    if _schedule_free(json.loads(json.dumps(saved_meta))) != _schedule_free(json.loads(json.dumps(meta.to_dict()))):
        raise AgileInputError(f"{path} was written by another meta-training config; use a fresh output folder.")
    saved = json.loads(blob.get("model", "{}"))  # fields added since it was written count as matching
    changed = sorted(k for k, v in json.loads(json.dumps(cfg.to_dict())).items() if saved.get(k, v) != v)
    if changed:
        raise AgileInputError(
            f"{path} was written for another network ({', '.join(changed)} differ); use a fresh "
            "output folder, or restore the [model] settings it was trained with."
        )
    state = _new_state(cfg, meta, blob["params"], device)
    state.optimizer.load_state_dict(blob["optimizer"])  # moves Adam's moments to the parameters' device
    if device.type == "cuda" and "cuda_global" in blob:
        torch.cuda.set_rng_state(blob["cuda_global"], device)
    state.iteration = int(blob["iteration"])
    state.rng.bit_generator.state = json.loads(blob["numpy_rng"])
    state.gen.set_state(blob["torch_gen"])
    torch.set_rng_state(blob["torch_global"])
    state.history = json.loads(blob["history"])
    return state


def meta_train(
    cfg: ModelConfig,
    meta: MetaConfig,
    pool: TaskPool,
    val_pool: TaskPool | None = None,
    out_dir: str | Path | None = None,
    init: Params | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | None = None,
) -> tuple[Params, list[dict]]:
    """Task-augmented MAML on `pool`'s meta types; resumes from `out_dir/checkpoint.pt` if present.

    Returns the meta-trained parameters (on the CPU) and the history (loss, accuracy, validation per logged step).
    `progress(iteration, total, info)` is called every iteration; `should_stop()` allows cancelling
    (a checkpoint is written first, so a later call resumes). `device`: 'auto' (CUDA, then MPS, else CPU; the
    default, or $NAPARI_AGILE_DEVICE), 'cpu', 'cuda', 'mps'; a checkpoint resumes on any device.
    """
    dev = pick_device(device)
    ckpt = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    state = (
        _load_checkpoint(ckpt, cfg, meta, dev)
        if ckpt is not None and ckpt.exists()
        else _new_state(cfg, meta, init, dev)
    )
    last_save = time.monotonic()
    while state.iteration < meta.iterations:
        if should_stop is not None and should_stop():
            break
        second_order = not meta.first_order
        state.optimizer.zero_grad()
        losses, accs = [], []
        for _ in range(meta.tasks_per_batch):
            cell_type = meta.meta_types[int(state.rng.integers(len(meta.meta_types)))]
            task = draw_task(
                pool, meta, cell_type, state.rng, state.gen, n_channels=len(pool.channels or cfg.channels)
            ).to(dev)
            loss, acc = episode_loss(cfg, state.params, task, meta, second_order)
            (loss / meta.tasks_per_batch).backward()
            losses.append(float(loss.detach()))
            accs.append(acc)
        state.optimizer.step()
        state.iteration += 1
        info = {"iteration": state.iteration, "loss": float(np.mean(losses)), "query_acc": float(np.mean(accs))}
        if val_pool is not None and (state.iteration % meta.validate_every == 0 or state.iteration == meta.iterations):
            info["val_acc"] = validate(cfg, {k: v.detach() for k, v in state.params.items()}, val_pool, meta)
        state.history.append(info)
        if progress is not None:
            progress(state.iteration, meta.iterations, info)
        if ckpt is not None and time.monotonic() - last_save > meta.checkpoint_seconds:
            _save_checkpoint(ckpt, state, meta, cfg)
            last_save = time.monotonic()
    if ckpt is not None:
        _save_checkpoint(ckpt, state, meta, cfg)
    return {k: v.detach().cpu().clone() for k, v in state.params.items()}, state.history
