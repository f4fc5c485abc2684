"""The AGILE loop on one section: suggest -> annotate -> adapt -> predict -> paint, saved as it goes.

Every cell type is its own binary task adapted from the same meta-trained weights. Answers are appended
to `answers.jsonl` in the session's folder the moment they are given, so a crash loses nothing.
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import tifffile
import torch
from safetensors.torch import load_file, save_file

from .cells import Cells, read_cell_table, write_cell_table
from .device import pick_device
from .errors import AgileInputError
from .export import NONE_TYPE, to_rgb255
from .meta import adapt_params
from .model import Params, bin_patches, estimate_stats, head_keys
from .modelio import AgileModel, check_channels, load_model
from .patches import Normalizer, fit_normalizer, iter_patches
from .likeness import section_profile, unlike_message
from .store import default_store
from .thresholds import assign_types, fit_threshold, type_threshold
from .tissue import Tissue
from .uncertainty import (METHODS, SPREAD, cover, mc_full_probs, mc_head_probs, pick_spread, predictive_entropy,
                          scores, spread_picks, trunk_features)

Progress = Callable[[int, int], None]
#: what `Session.suggest` accepts: the acquisition scores, a covering round, or cover-then-entropy
SUGGEST_METHODS = ("auto", "cover", *METHODS)


@dataclass
class CellType:
    """One binary task: the user's answers and, once adapted, its own weights."""

    name: str
    answers: dict[int, bool] = field(default_factory=dict)
    params: Params | None = None  # None: still the meta-trained initial weights
    steps: int = 0


class Session:
    """Interactive AGILE on one tissue: the Python twin of every button in the napari widget."""

    def __init__(
        self,
        tissue: Tissue,
        cells: Cells,
        model: AgileModel | None = None,
        *,
        store: str | Path | None = None,
        device: str | None = None,
        mc_passes: int = 20,
        threshold: float = 0.5,
        seed: int = 0,
        normalizer: Normalizer | None = None,
        stats_cells: int = 512,
        progress: Progress | None = None,
        resume: bool = False,
        stats: Params | None = None,
    ) -> None:
        """`store`: folder the answers are written to as they are given (`self.store`; by default a fresh one in
        store.sessions_dir(), ~/.napari-agile/sessions, which `napari-agile clean-sessions` empties); a folder
        that already holds a session is only reused with `resume=True` (what `Session.load` does).
        `stats`: the batch-norm statistics to use (those saved with adapted weights); None estimates them on
        `stats_cells` cells of this tissue."""
        if store is not None and (Path(store) / "session.json").exists() and not resume:
            raise AgileInputError(f"{store} already holds a session: open it with Session.load, or choose an empty folder.")
        model = load_model() if model is None else model
        check_channels(model, tissue.channel_names)
        if len(cells) == 0:
            raise AgileInputError("This tissue has no cells: run nucleus detection first (or check its channels).")
        cells.check_labels()
        self.model = model
        self.tissue = tissue.select(model.channels)
        self.tissue_source = self.tissue.source  # the section the answers belong to (kept by Session.load)
        self.cells = cells
        self.device = pick_device(device)
        self.mc_passes = mc_passes
        self.threshold = threshold
        self.type_thresholds: dict[str, float | None] = {}  # per type, from its held-out answers (thresholds.py)
        self.seed = seed
        self.types: dict[str, CellType] = {}
        self.colors: dict[str, str] = {}  # '#rrggbb' per cell type, as the user chose them (set_color)
        self._history: list[tuple[str, int, bool | None]] = []  # (type, id, previous answer) for undo
        self.normalizer = normalizer or fit_normalizer(self.tissue, seed=seed)
        self._init = {k: v.to(self.device) for k, v in model.params.items()}
        self._x = self._binned_patches(progress)
        self.profile = section_profile(model.config, self._x, list(model.channels))  # likeness.py
        if stats is None:
            sample = np.random.default_rng(seed).choice(len(cells), min(stats_cells, len(cells)), replace=False)
            stats = estimate_stats(model.config, self._init, self._x[np.sort(sample)].float())
        self.stats = {k: v.to(self.device) for k, v in stats.items()}
        self._feats: dict[str | None, torch.Tensor] = {}
        self._mc: dict[str | None, np.ndarray] = {}
        self._features(None)  # the meta-trained features, computed here so the first Suggest is interactive
        self.store = Path(store) if store is not None else default_store()
        if not (self.store / "cells.csv").exists():
            self._write_static(self.store)
        if not resume:  # a resumed folder keeps its session.json (types, steps) until the session changes
            self._write_meta()

    # ---- cells and patches ------------------------------------------------------------------
    def _binned_patches(self, progress: Progress | None) -> torch.Tensor:
        """All cells' patches, normalised and binned to the network's input, kept as float16."""
        cfg = self.model.config
        out = torch.empty((len(self.cells), cfg.planes, cfg.input_size, cfg.input_size), dtype=torch.float16)
        done, missing = 0, []
        for ids, batch in iter_patches(self.tissue, self.cells, size=cfg.patch_size, normalizer=self.normalizer,
                                       nucleus_mask=cfg.nucleus_mask):
            missing.extend(np.asarray(ids)[~np.isfinite(batch).reshape(len(batch), -1).all(1)].tolist())
            rows = torch.from_numpy(self.cells.table.index.get_indexer(ids))
            out[rows] = bin_patches(torch.from_numpy(batch), cfg.bin).half()
            done += len(ids)
            if progress is not None:
                progress(done, len(self.cells))
        if missing:
            raise AgileInputError(
                f"{len(missing)} cells' patches hold missing (NaN) or infinite pixels, e.g. cells {missing[:5]}: "
                "replace them in the image (numpy.nan_to_num) or leave those cells out of the cell table."
            )
        return out.to(self.device)

    def _rows(self, ids) -> np.ndarray:
        """Row positions in the cell table of validated ids."""
        return self.cells.table.index.get_indexer(self.cells.check_ids(ids))

    # ---- cell types -------------------------------------------------------------------------
    def _type(self, name: str, create: bool) -> CellType:
        if not isinstance(name, str) or not name.strip() or name == NONE_TYPE:
            raise AgileInputError(f"A cell type needs a name (not empty, not {NONE_TYPE!r}); got {name!r}.")
        if name not in self.types:
            if not create:
                known = list(self.types) or "none yet"
                raise AgileInputError(f"No cell type {name!r} in this session; it knows {known}.")
            like = difflib.get_close_matches(name.lower(), [t.lower() for t in self.types], n=1, cutoff=0.8)
            if like:
                warnings.warn(f"New cell type {name!r}, next to {like[0]!r} already in this session: a typo? "
                              "(session.undo() takes the last answer back)", stacklevel=3)
            self.types[name] = CellType(name)
            self._write_meta()
        return self.types[name]

    def _params(self, name: str | None) -> Params:
        state = self.types.get(name) if name is not None else None
        return self._init if state is None or state.params is None else state.params

    def _key(self, name: str | None, trunk: bool = False) -> str | None:
        """Cache key of a type's weights: None while they are the meta-trained ones (shared by every
        unadapted type), and also for the trunk when adaptation only touches the dense layer."""
        state = self.types.get(name) if name is not None else None
        if state is None or state.params is None or (trunk and self.model.adapt_scope == "head"):
            return None
        return name

    def _features(self, name: str | None, progress: Progress | None = None) -> torch.Tensor:
        """Trunk features of every cell under the type's current weights (cached until it adapts)."""
        key = self._key(name, trunk=True)
        if key not in self._feats:
            self._feats[key] = trunk_features(self.model.config, self._params(name), self.stats, self._x,
                                              progress=progress)
        return self._feats[key]

    def _mc_samples(self, name: str | None, progress: Progress | None = None) -> np.ndarray:
        """(T, N) MC-dropout positive probabilities for every cell (cached until the type adapts)."""
        key = self._key(name)
        if key not in self._mc:
            cfg, params = self.model.config, self._params(name)
            if cfg.dropout_placement == "head":
                samples = mc_head_probs(cfg, params, self._features(name, progress), self.mc_passes, self.seed)
            else:
                samples = mc_full_probs(cfg, params, self.stats, self._x, self.mc_passes, self.seed)
            self._mc[key] = samples.cpu().numpy()
        return self._mc[key]

    # ---- the loop ---------------------------------------------------------------------------
    def suggest(self, cell_type: str, n: int = 8, among: Sequence[int] | None = None,
                method: str = "auto", min_distance: float = 20.0, spread: int = SPREAD,
                progress: Progress | None = None) -> list[int]:
        """Ids of the `n` unlabelled cells to ask about next for `cell_type` (within `among`).

        `method`: "entropy" (the paper: the cells the model is least sure of), "bald", "random", "cover" (cells
        that cover the section's range of centre-block features, type-agnostic), or "auto": "cover" while the
        type has no answer yet, then "entropy" (docs/method.md). By entropy or BALD the n asked are those that
        cover the marker levels of the `spread` * n most uncertain cells, so one round does not repeat one kind of
        cell (`spread=1`: the n most uncertain, as the paper). `progress(done, total)` follows the network pass
        over the cells when it is not cached yet.
        """
        if n < 1:
            raise AgileInputError(f"Ask for at least one cell (n={n}).")
        if spread < 1:
            raise AgileInputError(f"spread={spread}: use 1 (the n most uncertain cells) or more (a wider choice).")
        if method not in SUGGEST_METHODS:
            raise AgileInputError(f"Unknown suggestion method {method!r}: use one of {', '.join(SUGGEST_METHODS)}.")
        rows = np.arange(len(self.cells)) if among is None else self._rows(among)
        state = self._type(cell_type, create=True)
        ids = self.cells.ids[rows]
        unlabelled = ~np.isin(ids, list(state.answers))
        rows = rows[unlabelled]
        if rows.size == 0:
            return []
        if method == "auto":
            method = "entropy" if state.answers else "cover"
        if method == "cover":
            feats = self._features(None, progress)[torch.as_tensor(rows, device=self.device)]  # meta-trained
            picked = cover(self.model.config, feats, n, seed=self.seed)
            return [int(i) for i in self.cells.ids[rows[picked]]]
        samples = self._mc_samples(cell_type, progress)[:, rows]
        rng = np.random.default_rng([self.seed, len(state.answers)])
        score = scores(samples, method, rng)
        wide = spread if method != "random" else 1
        picked = pick_spread(score, self.cells.centroids[rows], min(n * wide, rows.size), min_distance)
        if wide > 1:
            feats = self._features(None, progress)[torch.as_tensor(rows, device=self.device)]  # the block: any weights
            picked = spread_picks(self.model.config, feats, picked, n, seed=self.seed)
        return [int(i) for i in self.cells.ids[rows[picked]]]

    def annotate(self, cell_type: str, ids: Sequence[int], answers: Sequence[bool]) -> None:
        """Record the user's answers to "is this a `cell_type`?"; written to disk before returning."""
        ids_arr = self.cells.check_ids(ids)
        answers = list(np.atleast_1d(answers))
        if len(answers) != len(ids_arr):
            raise AgileInputError(f"{len(ids_arr)} cell ids but {len(answers)} answers: give one answer per cell.")
        try:
            flags = [bool(_as_answer(a)) for a in answers]
        except ValueError as err:
            raise AgileInputError(str(err)) from None
        given: dict[int, bool] = {}
        for cid, yes in zip(ids_arr.tolist(), flags):
            if given.setdefault(cid, yes) != yes:
                raise AgileInputError(f"Cell {cid} is answered both yes and no in one call: give it one answer.")
        self._type(cell_type, create=True)
        records = [{"type": cell_type, "id": cid, "answer": yes} for cid, yes in zip(ids_arr.tolist(), flags)]
        for record in records:
            self._replay(record)
        self._journal(records)

    def undo(self) -> tuple[str, int] | None:
        """Take back the last answer (the journal keeps both lines, so a reloaded session can undo further);
        returns (type, id) or None."""
        if not self._history:
            return None
        cell_type, cid, previous = self._history[-1]
        record = {"type": cell_type, "id": cid, "answer": previous, "undo": True}
        self._replay(record)
        self._journal([record])
        return cell_type, cid

    def _replay(self, record: dict) -> None:
        """Apply one journal line: an answer (kept in the undo history) or the undo of the last one."""
        state = self.types.setdefault(record["type"], CellType(record["type"]))
        cid, answer = record["id"], record["answer"]
        if record.get("undo") or answer is None:  # journals before the undo mark wrote only None undos unmarked
            if self._history:
                self._history.pop()
        else:
            self._history.append((record["type"], cid, state.answers.get(cid)))
        if answer is None:
            state.answers.pop(cid, None)
        else:
            state.answers[cid] = bool(answer)

    def set_color(self, cell_type: str, color: str) -> None:
        """Remember the colour the user chose for `cell_type` ('#rrggbb'), saved with the session."""
        r, g, b = to_rgb255(color)
        self.colors[cell_type] = f"#{r:02x}{g:02x}{b:02x}"
        self._write_meta()

    def adapt(self, cell_type: str, steps: int = 1, lr: float | None = None) -> None:
        """`steps` gradient steps from the meta-trained weights on all answers for `cell_type` so far."""
        if cell_type not in self.types:
            known = list(self.types) or "none yet"
            raise AgileInputError(f"No cell type {cell_type!r} to adapt; the session knows {known}.")
        state = self.types[cell_type]
        if not state.answers:
            raise AgileInputError(f"No answers for {cell_type!r} yet: label a few cells first (suggest, then annotate).")
        if steps < 1:
            raise AgileInputError(f"steps must be at least 1 (got {steps}).")
        if lr is not None and not lr > 0:
            raise AgileInputError(f"lr must be a positive step size (got {lr}); None takes the model's.")
        y = torch.tensor([int(a) for a in state.answers.values()], device=self.device)
        if y.min() == y.max():
            warnings.warn(
                f"All {len(y)} answers for {cell_type!r} say {'yes' if y[0] else 'no'}: the model learns more "
                "from at least one cell of each kind.", stacklevel=2,
            )
        x = self._x[self._rows(list(state.answers))].float()
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + len(y))  # dropout masks: the same answers give the same weights
            fast = adapt_params(self.model.config, self._init, self.stats, x, y,
                                self.model.inner_lr if lr is None else lr, steps, self.model.adapt_scope)
        if not all(bool(torch.isfinite(v).all()) for v in fast.values()):
            raise AgileInputError(f"Adapting {cell_type!r} diverged (non-finite weights): use a smaller learning "
                                  f"rate than {self.model.inner_lr if lr is None else lr} or fewer steps.")
        state.params = {k: v.detach() for k, v in fast.items()}
        state.steps = steps
        self.type_thresholds[cell_type] = fit_threshold(self, cell_type, steps, lr)
        self._feats.pop(cell_type, None)
        self._mc.pop(cell_type, None)
        self._save_weights(self.store)

    def probabilities(self, cell_type: str, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(p, entropy) per cell for one type: MC-dropout mean probability and predictive entropy."""
        samples = self._mc_samples(self._type(cell_type, create=False).name, progress)
        return samples.mean(0), predictive_entropy(samples)

    def predict(self, progress: Progress | None = None) -> pd.DataFrame:
        """Per cell: id, y, x, p_<type>, entropy_<type> for each adapted type, and the most probable `cell_type`.

        A type not adapted yet claims no cell (its weights are still the meta-trained ones, which know nothing of
        it) and is named in a warning. `progress(done, total)` counts cells over all types whose probabilities are
        not cached yet.
        """
        table = pd.DataFrame({"id": self.cells.ids, "y": self.cells.table["y"].to_numpy(),
                              "x": self.cells.table["x"].to_numpy()})
        names = [name for name, state in self.types.items() if state.params is not None]
        waiting = [name for name in self.types if name not in names]
        if waiting:
            warnings.warn(f"Not adapted yet, so typing no cell: {', '.join(waiting)}. Answer a few suggested cells "
                          "of each and adapt it (Adapt) first.", stacklevel=2)
        probs = np.zeros((len(table), len(names)))
        for j, name in enumerate(names):
            step = None if progress is None else _offset(progress, j * len(table), len(names) * len(table))
            p, h = self.probabilities(name, step)
            table[f"p_{name}"], table[f"entropy_{name}"] = p, h
            probs[:, j] = p
        table["cell_type"] = assign_types(probs, names, [type_threshold(self, n) for n in names])
        return table

    def paint(self, table: pd.DataFrame | None = None) -> np.ndarray:
        """(Y, X) int32: every nucleus painted with its predicted type's index (1-based, session order)."""
        if self.cells.labels is None:
            raise AgileInputError("These cells have no nucleus mask to paint: detect nuclei, or pass Cells with labels.")
        table = self.predict() if table is None else table
        codes = {name: i + 1 for i, name in enumerate(self.types)}
        lut = np.zeros(int(self.cells.labels.max()) + 1, dtype=np.int32)
        ids = table["id"].to_numpy()
        keep = ids < lut.size
        lut[ids[keep]] = [codes.get(t, 0) for t in table["cell_type"].to_numpy()[keep]]
        return lut[self.cells.labels]

    # ---- persistence ------------------------------------------------------------------------
    def _journal(self, records: list[dict]) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        with open(self.store / "answers.jsonl", "a", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _write_meta(self) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": "napari-agile-session/1",
            "types": list(self.types),
            "steps": {n: t.steps for n, t in self.types.items()},
            "mc_passes": self.mc_passes, "threshold": self.threshold, "seed": self.seed,
            "normalizer": self.normalizer.to_dict(),
            "channels": list(self.model.channels),
            "tissue_source": self.tissue_source,
            "colors": self.colors,
            "thresholds": self.type_thresholds,
            "profile": self.profile,
        }
        tmp = self.store / "session.json.tmp"  # replaced in one step: a crash mid-write keeps the last one
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, self.store / "session.json")

    def _save_weights(self, folder: Path) -> None:
        tensors = {f"stats/{k}": v.cpu() for k, v in self.stats.items()}
        for name, state in self.types.items():
            if state.params is not None:  # the dense layer and what adaptation changed; the rest is the model's
                head = head_keys(state.params)
                tensors.update({f"type/{name}/{k}": v.cpu().contiguous() for k, v in state.params.items()
                                if k in head or not torch.equal(v, self._init[k])})
        folder.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(folder / "adapted.safetensors"))
        self._write_meta()

    def _write_static(self, folder: Path) -> None:
        """What never changes in a session (model, cells, nucleus mask): written once, so a crash can reload."""
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / "model.safetensors")
        write_cell_table(self.cells, folder / "cells.csv")
        if self.cells.labels is not None:
            tifffile.imwrite(folder / "nuclei.tif", self.cells.labels, compression="zlib")

    def save(self, path: str | Path) -> Path:
        """Write the whole session to folder `path` (answers, adapted weights, model, cells) and keep saving there."""
        path = Path(path)
        if path.resolve() != self.store.resolve():
            if path.exists() and not path.is_dir():
                raise AgileInputError(f"{path} is a file: save a session into a folder (a new or empty one).")
            if (path / "session.json").exists():
                raise AgileInputError(f"{path} already holds another session, whose answers saving here would "
                                      "replace: choose a new or empty folder.")
            self._write_static(path)
            (path / "answers.jsonl").unlink(missing_ok=True)
            if (self.store / "answers.jsonl").exists():  # every answer and undo, in the order given (for undo)
                shutil.copyfile(self.store / "answers.jsonl", path / "answers.jsonl")
            self.store = path
        self._save_weights(path)
        return path

    @classmethod
    def load(cls, path: str | Path, tissue: Tissue, device: str | None = None,
             progress: Progress | None = None) -> "Session":
        """Reopen a saved (or crashed) session on its tissue: answers, adapted weights and cells as they were.
        `progress(done, total)` follows the cutting of every cell's patch, as in `Session(...)`."""
        path = Path(path)
        if not (path / "session.json").exists():
            raise AgileInputError(f"{path} is not a napari-agile session folder (no session.json).")
        cells = read_cell_table(path / "cells.csv")
        if (path / "nuclei.tif").exists():
            cells.labels = tifffile.imread(path / "nuclei.tif").astype(np.int32)
            if cells.labels.shape != tuple(tissue.shape):
                raise AgileInputError(
                    f"This session was made on a {cells.labels.shape[0]} x {cells.labels.shape[1]} px section, not "
                    f"on this {tissue.shape[0]} x {tissue.shape[1]} px one: open the section it was made on (for "
                    "another section, use Session.apply_saved / napari-agile predict).")
        weights = path / "adapted.safetensors"
        tensors = load_file(str(weights)) if weights.exists() else {}
        # the statistics the weights were adapted under (a session saved before any adapt has none)
        stats = {k[len("stats/"):]: v for k, v in tensors.items() if k.startswith("stats/")} or None
        session, meta = cls._from_saved(path, tissue, cells, same_tissue=True, store=path, device=device, resume=True,
                                        stats=stats, progress=progress)
        session.types = {name: CellType(name, steps=meta["steps"].get(name, 0)) for name in meta["types"]}
        for line in (path / "answers.jsonl").read_text().splitlines() if (path / "answers.jsonl").exists() else []:
            session._replay(json.loads(line))
        for name, state in session.types.items():
            state.params = session._saved_params(tensors, name)
        saved_source = meta.get("tissue_source")
        session._warn_if_other_section(saved_source, tissue.source)
        session.tissue_source = saved_source or session.tissue_source
        session._write_meta()
        return session

    def _warn_if_other_section(self, saved_source: str | None, source: str | None) -> None:
        """Warn when a reloaded session's section is not the one it was made on: by file name when both are files
        (napari layers name none), and otherwise by the channel percentiles it was scaled with (the same pixels
        give the same numbers: the sample is drawn with the session's seed)."""
        elsewhere = ("Load it on that section (or, for another section, use Session.apply_saved / napari-agile "
                     "predict).")
        files = [Path(src) for src in (saved_source, source) if src and Path(src).exists()]
        if len(files) == 2 and files[0].resolve() != files[1].resolve():
            warnings.warn(f"This session was made on {saved_source}, not on {source}: its cells, nuclei and "
                          f"intensity scaling are that section's. {elsewhere}", stacklevel=3)
            return
        fresh = fit_normalizer(self.tissue, seed=self.seed)
        if not (np.allclose(fresh.low, self.normalizer.low, rtol=1e-3, atol=1e-3)
                and np.allclose(fresh.high, self.normalizer.high, rtol=1e-3, atol=1e-3)):
            warnings.warn("This section's intensities do not match the session's (the channel percentiles it was "
                          "scaled with differ): it looks like another section than the one the session was made on. "
                          f"{elsewhere}", stacklevel=3)

    @staticmethod
    def check_saved(path: str | Path) -> Path:
        """`path` as a Path, or a clear error if it is not a saved session with adapted cell types (before a batch
        opens any image)."""
        saved = Path(path)
        if not (saved / "adapted.safetensors").exists():
            raise AgileInputError(f"{saved} is not a saved session with adapted cell types: adapt at least one type "
                                  "and save the session (widget: Save session…; Python: Session.save).")
        return saved

    @classmethod
    def apply_saved(cls, path: str | Path, tissue: Tissue, cells: Cells, store: str | Path | None = None,
                    device: str | None = None, progress: Progress | None = None) -> "Session":
        """A session on new tissue with the cell types adapted in the saved session `path` (for batch prediction).

        Batch-norm statistics are re-estimated on the new tissue; the answers stay with the original section.
        """
        saved = cls.check_saved(path)
        session, meta = cls._from_saved(saved, tissue, cells, same_tissue=False, store=store, device=device,
                                        progress=progress)
        unlike = unlike_message(meta.get("profile", {}), session.profile)
        if unlike:
            warnings.warn(unlike, stacklevel=2)
        tensors = load_file(str(saved / "adapted.safetensors"))
        for name in meta["types"]:
            params = session._saved_params(tensors, name)
            if params is not None:
                session.types[name] = CellType(name, params=params)
        session._write_meta()
        return session

    @classmethod
    def _from_saved(cls, path: Path, tissue: Tissue, cells: Cells, same_tissue: bool, **kwargs) -> tuple["Session", dict]:
        """A session with the saved folder's model and settings (MC passes, threshold, seed; on the same tissue
        its intensity normaliser too), and the folder's session.json."""
        meta = json.loads((path / "session.json").read_text())
        normalizer = Normalizer.from_dict(meta["normalizer"]) if same_tissue else None
        session = cls(tissue, cells, load_model(path / "model.safetensors"), mc_passes=meta["mc_passes"],
                      threshold=meta["threshold"], seed=meta["seed"], normalizer=normalizer, **kwargs)
        session.colors = dict(meta.get("colors", {}))
        session.type_thresholds = dict(meta.get("thresholds", {}))
        return session, meta

    def _saved_params(self, tensors: dict[str, torch.Tensor], name: str) -> Params | None:
        """A type's weights from a saved file: the model's, overwritten by what the file holds (None if nothing)."""
        prefix = f"type/{name}/"  # exact weight names: type "a" must not take type "a/b"'s weights
        saved = {k[len(prefix):]: v.to(self.device) for k, v in tensors.items()
                 if k.startswith(prefix) and k[len(prefix):] in self._init}
        return {**self._init, **saved} if saved else None

    def adapted_model(self, cell_type: str) -> AgileModel:
        """The weights adapted to `cell_type`, as a model file others can load."""
        state = self._type(cell_type, create=False)
        if state.params is None:
            raise AgileInputError(f"{cell_type!r} has not been adapted yet: press Adapt (session.adapt) first.")
        info = dict(self.model.info, adapted_to=cell_type, answers=len(state.answers), steps=state.steps)
        return AgileModel(self.model.config, {k: v.cpu() for k, v in state.params.items()},
                          self.model.inner_lr, self.model.adapt_scope, info)


def _offset(progress: Progress, start: int, total: int) -> Progress:
    """A progress callback for one stage of a longer job: reports `start + done` of `total`."""
    return lambda done, _: progress(start + done, total)


def _as_answer(a) -> bool:
    """Accept True/False, 1/0, 'yes'/'no', 'y'/'n'."""
    if isinstance(a, (bool, np.bool_)):
        return bool(a)
    if isinstance(a, (int, np.integer)) and a in (0, 1):
        return bool(a)
    if isinstance(a, str) and a.strip().lower() in ("yes", "y", "true", "1", "no", "n", "false", "0"):
        return a.strip().lower() in ("yes", "y", "true", "1")
    raise ValueError(f"An answer must be yes/no (True/False, 1/0); got {a!r}.")
