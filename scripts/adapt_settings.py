"""Change how a meta-trained model file adapts (its head's start and centre block), keeping its weights.

The bundled any-panel model was made so: its weights come from `configs/any-panel-model.toml`, its adaptation from
the settings below (docs/method.md, "Newton head"); the file records the change in its info.

    python scripts/adapt_settings.py runs/any-panel/model.safetensors \\
        src/napari_agile/models/agile-any-panel.safetensors head_init=newton centre_whiten=false centre_sqrt=true
    python scripts/adapt_settings.py any-panel src/napari_agile/models/agile-any-panel.safetensors \\
        head_ridge=1.0 head_select=3
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import napari_agile as agile
from napari_agile.engine.network import ModelConfig

#: settings that change adaptation or the centre block's normalisation, not the meta-trained weights' shapes
ADAPTATION = {"head_init": str, "head_ridge": float, "head_select": int, "centre_whiten": bool, "centre_sqrt": bool}


def parse(pair: str) -> tuple[str, object]:
    """`key=value` of one ADAPTATION setting, typed."""
    key, _, value = pair.partition("=")
    if key not in ADAPTATION:
        raise SystemExit(f"{key!r} is not an adaptation setting; choose from {', '.join(ADAPTATION)}")
    kind = ADAPTATION[key]
    return key, (value.lower() == "true") if kind is bool else kind(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a model file or a bundled model's name")
    ap.add_argument("out", help="the model file to write")
    ap.add_argument("settings", nargs="+", help="key=value, of: " + ", ".join(ADAPTATION))
    args = ap.parse_args()
    model = agile.load_model(args.model)
    changes = dict(map(parse, args.settings))
    config: ModelConfig = dataclasses.replace(model.config, **changes)
    changed = dict(model.info.get("adaptation_changed", {}))  # each setting's first value, then its latest
    changed.update({k: [changed.get(k, [getattr(model.config, k)])[0], v] for k, v in changes.items()})
    info = {**model.info, "adaptation_changed": changed}
    agile.AgileModel(config, model.params, model.inner_lr, model.adapt_scope, info).save(args.out)
    print(f"wrote {args.out}: {json.dumps(info['adaptation_changed'])}")


if __name__ == "__main__":
    main()
