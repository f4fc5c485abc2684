"""AgileModel: a meta-trained network with its input contract; saved as safetensors (no pickle, no code)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import AgileInputError
from .model import ModelConfig, Params
from .tissue import did_you_mean, find_channel

#: File name of the model shipped inside the package (see models/MODEL_CARD.md).
BUNDLED_MODEL = "agile-rat-brain.safetensors"


@dataclass
class AgileModel:
    """Meta-trained initial weights + architecture + training facts (the model card's numbers)."""

    config: ModelConfig
    params: Params
    inner_lr: float = 0.01
    adapt_scope: str = "all"
    info: dict = field(default_factory=dict)

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
        save_file({k: v.detach().contiguous().cpu() for k, v in self.params.items()}, str(path), metadata=meta)
        return path


def _bundled_path() -> Path:
    return Path(str(resources.files("napari_agile") / "models" / BUNDLED_MODEL))


def load_model(path: str | Path | None = None) -> AgileModel:
    """The bundled meta-trained model, or a model saved with `AgileModel.save` (safetensors only)."""
    path = _bundled_path() if path is None else Path(path)
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
    saved = json.loads(meta["config"])
    saved.pop("extra", None)  # a field files written before 2026-11-28 carry, never used
    cfg = ModelConfig(**{"head_init": "meta", **saved})  # files from before head_init: the paper's head
    return AgileModel(
        config=cfg,
        params={k: v.float() for k, v in tensors.items()},
        inner_lr=float(meta["inner_lr"]),
        adapt_scope=meta["adapt_scope"],
        info=json.loads(meta["info"]),
    )


def check_channels(model: AgileModel, channel_names: Sequence[str]) -> None:
    """Refuse a tissue that lacks channels the model reads, naming them."""
    missing = [c for c in model.channels if find_channel(c, channel_names) is None]
    if missing:
        raise AgileInputError(
            f"The model reads channels {list(model.channels)}; this tissue lacks {missing} "
            f"(it has {list(channel_names)}).{''.join(did_you_mean(c, channel_names) for c in missing)} "
            "Rename its channels (Tissue.rename) or meta-train "
            "a model on this panel with `napari-agile meta-train`."
        )
