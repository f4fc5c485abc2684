"""AgileModel: a meta-trained network with its input contract; saved as safetensors (no pickle, no code)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from napari_agile.engine.meta import check_scope
from napari_agile.engine.network import ModelConfig, Params, init_params
from napari_agile.errors import AgileInputError
from napari_agile.io.settings import check_types
from napari_agile.io.storage import write_atomic
from napari_agile.io.tissue import did_you_mean, find_channel

#: File name of the model shipped inside the package for the paper's 7-channel panel (see models/MODEL_CARD.md).
BUNDLED_MODEL = "agile-rat-brain.safetensors"
#: The models shipped inside the package, by the name `load_model` takes.
BUNDLED_MODELS = {"rat-brain": BUNDLED_MODEL, "any-panel": "agile-any-panel.safetensors"}


@dataclass
class AgileModel:
    """Meta-trained initial weights + architecture + training facts (the model card's numbers)."""

    config: ModelConfig
    params: Params
    inner_lr: float = 0.01
    adapt_scope: str = "all"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_scope(self.adapt_scope)

    @property
    def channels(self) -> tuple[str, ...]:
        """The channel names the model reads, in its input order."""
        return self.config.channels

    def n_parameters(self) -> int:
        """How many numbers the weights hold."""
        return sum(int(v.numel()) for v in self.params.values())

    def save(self, path: str | Path) -> Path:
        """Write weights and JSON metadata to one .safetensors file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": "napari-agile-model/1",
            "config": json.dumps(self.config.to_dict()),
            "inner_lr": str(self.inner_lr),
            "adapt_scope": self.adapt_scope,
            "info": json.dumps(self.info),
        }
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.params.items()}
        write_atomic(path, save(tensors, metadata=meta))
        return path


def _bundled_path(name: str = "rat-brain") -> Path:
    return Path(str(resources.files("napari_agile") / "models" / BUNDLED_MODELS[name]))


def load_model(path: str | Path | None = None) -> AgileModel:
    """A bundled meta-trained model by name ("rat-brain", the default: the paper's 7 channels; "any-panel": any
    marker panel), or a model saved with `AgileModel.save` (safetensors only)."""
    path = _bundled_path(str(path or "rat-brain")) if path is None or str(path) in BUNDLED_MODELS else Path(path)
    if not path.exists():
        raise AgileInputError(f"No model file at {path}.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError) as err:
        raise AgileInputError(
            f"{path} is not a napari-agile model file (safetensors): {err}. "
            "Models are written by `napari-agile meta-train` or `AgileModel.save`."
        ) from None
    if meta.get("format") != "napari-agile-model/1":
        raise AgileInputError(f"{path} is a safetensors file but not a napari-agile model (no model metadata).")
    try:
        saved = json.loads(meta["config"])
        if not isinstance(saved, dict):
            raise ValueError("the config is not a JSON object")
        saved.pop("extra", None)  # a field files written before 2026-11-28 carry, never used
        check_types(ModelConfig, saved, f"{path} config")
        cfg = ModelConfig.from_dict({"head_init": "meta", **saved}, f"{path} config")  # before head_init: the paper's
        model = AgileModel(
            config=cfg,
            params={k: v.float() for k, v in tensors.items()},
            inner_lr=float(meta["inner_lr"]),
            adapt_scope=meta["adapt_scope"],
            info=json.loads(meta["info"]),
        )
    except (KeyError, TypeError, ValueError, RecursionError, AgileInputError) as err:
        raise AgileInputError(
            f"{path} is a damaged napari-agile model file ({_reason(err)}): use the file "
            "`napari-agile meta-train` or `AgileModel.save` wrote, or write it again."
        ) from None
    _check_weights(path, model)
    return model


def _reason(err: Exception) -> str:
    """A short account of why a file's contents were refused."""
    if isinstance(err, KeyError):
        return f"no {err} entry"
    if isinstance(err, RecursionError):
        return "its metadata nests too deep"
    return str(err)[:200]


def _check_weights(path: Path, model: AgileModel) -> None:
    """A clear error when the file's weights are not the ones its network has (names and shapes)."""
    cfg = model.config
    expected = {k: tuple(v.shape) for k, v in init_params(cfg).items()}
    found = {k: tuple(v.shape) for k, v in model.params.items()}
    if cfg.per_channel and cfg.channels:  # adapted to one panel: the dense layer is laid out over its features
        expected["head.weight"] = (cfg.n_classes, cfg.feature_size)
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    resized = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    if missing or extra or resized:
        parts = [
            f"{label} {names[:5]}"
            for label, names in (("lacks", missing), ("has unknown", extra), ("has other shapes of", resized))
            if names
        ]
        raise AgileInputError(
            f"{path} holds other weights than its network needs (it {'; '.join(parts)}): use a "
            "model file written by `napari-agile meta-train` or `AgileModel.save`."
        )


def pick_model(channel_names: Sequence[str]) -> AgileModel:
    """The bundled model for a panel: the rat-brain model where every one of its channels is there (ignoring case, as
    Tissue.select reads them), else the model for any panel."""
    rat_brain = load_model("rat-brain")
    if all(find_channel(c, channel_names) is not None for c in rat_brain.channels):  # as check_channels matches
        return rat_brain
    return load_model("any-panel")


def check_channels(model: AgileModel, channel_names: Sequence[str]) -> None:
    """Refuse a tissue that lacks channels the model reads, naming them."""
    missing = [c for c in model.channels if find_channel(c, channel_names) is None]
    if missing:
        raise AgileInputError(
            f"The model reads channels {list(model.channels)}; this tissue lacks {missing} "
            f"(it has {list(channel_names)}).{''.join(did_you_mean(c, channel_names) for c in missing)} "
            "Use the model for any panel (load_model('any-panel'); the default for a section without these channels), "
            "rename the channels (Tissue.rename), or meta-train a model on this panel with "
            "`napari-agile meta-train`."
        )
