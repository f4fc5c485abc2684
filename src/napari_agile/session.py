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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import numpy as np
import pandas as pd
import tifffile
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from napari_agile.detect.nuclei import mask_off_nuclei, read_mask
from napari_agile.detect.patches import Normalizer, check_finite, fit_normalizer, iter_patches
from napari_agile.engine.device import pick_device
from napari_agile.engine.likeness import section_profile, unlike_message
from napari_agile.engine.meta import adapt_params
from napari_agile.engine.model_file import AgileModel, check_channels, load_model, pick_model
from napari_agile.engine.network import ModelConfig, Params, estimate_stats, head_keys, network_input, patch_scale
from napari_agile.engine.quality import AnswerQuality, answer_quality
from napari_agile.engine.thresholds import assign_types, fit_threshold, type_threshold
from napari_agile.engine.uncertainty import (
    METHODS,
    SPREAD,
    cover,
    mc_head_probs,
    pick_spread,
    predictive_entropy,
    scores,
    spread_picks,
    trunk_features,
)
from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells, read_cell_table, write_cell_table
from napari_agile.io.export import NONE_TYPE, default_colors, export_table, to_rgb255
from napari_agile.io.images import check_tissue
from napari_agile.io.session_folders import default_store
from napari_agile.io.storage import append_records, not_saved, read_json, recover_journal, write_atomic
from napari_agile.io.tissue import Tissue, nuclear_flags
from napari_agile.memory import short_of

Progress = Callable[[int, int], None]
#: what `Session.suggest` accepts: the acquisition scores, a covering round, entropy balanced between the predicted
#: classes, or "auto": a covering round, then AUTO_ROUNDS
SUGGEST_METHODS = ("auto", "cover", "balanced", *METHODS)
AUTO_ROUNDS = "entropy"
#: cells whose patches give a section's batch-norm statistics (stats_sample), unless told otherwise
STATS_CELLS = 512
#: MC-dropout passes per suggestion round, unless told otherwise
MC_PASSES = 20


@dataclass
class CellType:
    """One binary task: the user's answers and, once adapted, its own weights."""

    name: str
    answers: dict[int, bool] = field(default_factory=dict)
    params: Params | None = None  # None: still the meta-trained initial weights
    steps: int = 0
    adapted_on: tuple | None = None  # the answers `params` were adapted on (None: unknown, e.g. reloaded)

    def signature(self) -> tuple:
        """The answers as they stand, to tell whether weights saw all of them."""
        return tuple(sorted(self.answers.items()))


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
        mc_passes: int = MC_PASSES,
        threshold: float = 0.5,
        seed: int = 0,
        normalizer: Normalizer | None = None,
        stats_cells: int = STATS_CELLS,
        progress: Progress | None = None,
        resume: bool = False,
        stats: Params | None = None,
        channels: Sequence[str] | None = None,
        nuclear: Sequence[str] | None = None,
    ) -> None:
        """`store`: folder the answers are written to as they are given (`self.store`; by default a fresh one in
        store.sessions_dir(), ~/.napari-agile/sessions, which `napari-agile clean-sessions` empties); a folder
        that already holds a session is only reused with `resume=True` (what `Session.load` does).
        `stats`: the batch-norm statistics to use (those saved with adapted weights); None estimates them on
        `stats_cells` cells of this tissue. `model`: None picks the bundled model for the panel (`pick_model`).
        A model for any panel (`encoder = "per_channel"`) reads `channels` (default: all of the tissue's), of which
        `nuclear` are nuclear stains (default: by name, `nuclear_flags`); a fixed-panel model reads its own."""
        _check_inputs(tissue, cells)
        if store is not None and (Path(store) / "session.json").exists() and not resume:
            raise AgileInputError(
                f"{store} already holds a session: open it with Session.load, or choose an empty folder."
            )
        _check_settings(mc_passes, threshold)
        model = pick_model(tissue.channel_names) if model is None else model
        self.config = panel_config(model, tissue, channels, nuclear)
        if len(cells) == 0:
            raise AgileInputError("This tissue has no cells: run nucleus detection first (or check its channels).")
        cells.check_labels()
        cells.check_inside(tissue.shape)
        self.model = model
        self.tissue = tissue.select(self.config.channels)
        if "problems" not in self.tissue.metadata:  # not said yet by read_tissue: empty, constant, saturated channels
            for message in check_tissue(self.tissue):
                warnings.warn(message, stacklevel=2)
        nuclear = [n for n, f in zip(self.config.channels, self.config.nuclear) if f] or None
        if cells.labels is not None and (off := mask_off_nuclei(tissue, cells.labels, nuclear)):
            warnings.warn(off, stacklevel=2)
        self.tissue_source = self.tissue.source  # the section the answers belong to (kept by Session.load)
        self.cells = cells
        self.device = pick_device(device)
        self.mc_passes = mc_passes
        self.threshold = threshold
        self.type_thresholds: dict[str, float | None] = {}  # per type, from its held-out answers (engine/thresholds.py)
        self.seed = seed
        self.types: dict[str, CellType] = {}
        self.colors: dict[str, str] = {}  # '#rrggbb' per cell type, as the user chose them (set_color)
        self._history: list[tuple[str, int, bool | None]] = []  # (type, id, previous answer) for undo
        self.normalizer = normalizer or fit_normalizer(self.tissue, seed=seed)
        # nuclei far from the model's size are cut at the scale that makes them that size (1.0 on the simulator)
        self.scale = cell_scale(self.config, cells)
        self._init = {k: v.to(self.device) for k, v in model.params.items()}
        check_memory(self.config, len(cells), mc_passes)
        self._x = self._binned_patches(progress)
        self.profile = section_profile(self.config, self._x, list(self.config.channels))  # engine/likeness.py
        if stats is None:
            sample = stats_sample(len(cells), stats_cells, seed)
            stats = estimate_stats(self.config, self._init, self._x[sample].float())
        self.stats = {k: v.to(self.device) for k, v in stats.items()}
        self._feats: dict[str | None, torch.Tensor] = {}
        self._mc: dict[str | None, np.ndarray] = {}
        self._fits: dict[str, tuple] = {}  # per type: (answers signature, MC samples) of the fit Suggest uses
        self._features(None)  # the meta-trained features, computed here so the first Suggest is interactive
        self.store = Path(store) if store is not None else default_store()
        if not resume:  # a resumed folder keeps its session.json (types, steps) until the session changes
            self._create_store()

    # ---- cells and patches ------------------------------------------------------------------
    def _binned_patches(self, progress: Progress | None) -> torch.Tensor:
        """All cells' patches, normalised and binned to the network's input, kept as float16."""
        cfg = self.config
        out = torch.empty((len(self.cells), cfg.planes, cfg.input_size, cfg.input_size), dtype=torch.float16)
        done = 0
        for ids, batch in iter_patches(
            self.tissue,
            self.cells,
            size=cut_size(cfg, self.scale),
            normalizer=self.normalizer,
            nucleus_mask=cfg.nucleus_mask,
        ):
            check_finite(ids, batch)
            rows = torch.from_numpy(self.cells.table.index.get_indexer(ids))
            out[rows] = network_input(cfg, torch.from_numpy(batch)).half()
            done += len(ids)
            if progress is not None:
                progress(done, len(self.cells))
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
                warnings.warn(
                    f"New cell type {name!r}, next to {like[0]!r} already in this session: a typo? "
                    "(session.undo() takes the last answer back)",
                    stacklevel=3,
                )
            self.types[name] = CellType(name)
            try:
                self._write_meta()
            except AgileInputError:
                del self.types[name]  # not on disk: not in the session either
                raise
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
            self._feats[key] = trunk_features(self.config, self._params(name), self.stats, self._x, progress=progress)
        return self._feats[key]

    def _mc_samples(self, name: str | None, progress: Progress | None = None) -> np.ndarray:
        """(T, N) MC-dropout positive probabilities for every cell (cached until the type adapts)."""
        key = self._key(name)
        if key not in self._mc:
            self._mc[key] = self._sample(self._params(name), self._features(name, progress))
        return self._mc[key]

    def _sample(self, params: Params, feats: torch.Tensor) -> np.ndarray:
        """(T, N) MC-dropout probabilities under `params`, the head re-sampled on `feats` (every cell's trunk features
        under `params`), each cell's masks chosen by its id."""
        return mc_head_probs(self.config, params, feats, self.mc_passes, self.seed, keys=self.cells.ids).cpu().numpy()

    # ---- the loop ---------------------------------------------------------------------------
    def suggest(
        self,
        cell_type: str,
        n: int = 8,
        among: Sequence[int] | None = None,
        method: str = "auto",
        min_distance: float = 20.0,
        spread: int = SPREAD,
        progress: Progress | None = None,
    ) -> list[int]:
        """Ids of the `n` unlabelled cells to ask about next for `cell_type` (within `among`).

        `method`: "entropy" (the paper: the cells the model is least sure of), "bald", "random", "cover" (cells
        that cover the section's range of centre-block features, type-agnostic), or "auto": "cover" while the
        type has no answer yet, then "entropy" (docs/method.md). By entropy or BALD the n asked are those that
        cover the marker levels of the `spread` * n most uncertain cells, so one round does not repeat one kind of
        cell (`spread=1`: the n most uncertain, as the paper). `progress(done, total)` follows the network pass
        over the cells when it is not cached yet.
        """
        if not _is_whole(n) or n < 1:
            raise AgileInputError(f"Ask for a whole number of cells, at least one (n={n}).")
        if not _is_whole(spread) or spread < 1:
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
            method = AUTO_ROUNDS if state.answers else "cover"
        feats = self._features(None, progress)  # meta-trained: their centre block is the same under any weights
        if method == "cover":  # around the cells answered already, so a new round goes where no answer is
            answered = torch.as_tensor(self._rows(list(state.answers)), device=self.device, dtype=torch.long)
            picked = cover(
                self.config, feats[torch.as_tensor(rows, device=self.device)], n, seed=self.seed, fixed=feats[answered]
            )
            return [int(i) for i in self.cells.ids[rows[picked]]]
        samples = self._current_samples(state, progress)[:, rows]
        rng = np.random.default_rng([self.seed, len(state.answers)])
        score = scores(samples, "entropy" if method == "balanced" else method, rng)
        wide = spread if method != "random" else 1
        if method != "balanced":
            picked = self._round(score, rows, n, wide, min_distance, feats)
        else:  # half among the cells predicted positive, half among the rest (topped up where one side is short)
            p = samples.mean(0)
            sides = [np.flatnonzero(p >= 0.5), np.flatnonzero(p < 0.5)]
            k = min(len(sides[0]), max(n - len(sides[1]), (n + 1) // 2))
            picked = np.concatenate(
                [
                    side[self._round(score[side], rows[side], m, wide, min_distance, feats)]
                    for side, m in zip(sides, (k, n - k))
                    if m > 0
                ]
            )
        return [int(i) for i in self.cells.ids[rows[picked]]]

    def _round(
        self, score: np.ndarray, rows: np.ndarray, n: int, wide: int, min_distance: float, feats: torch.Tensor
    ) -> np.ndarray:
        """Positions (into `rows`) of the n cells covering the centre-block features of the `wide` * n best-scoring
        ones, spaced `min_distance` apart (the n best with `wide` 1)."""
        picked = pick_spread(score, self.cells.centroids[rows], min(n * wide, rows.size), min_distance)
        if wide > 1:
            picked = spread_picks(
                self.config, feats[torch.as_tensor(rows, device=self.device)], picked, n, seed=self.seed
            )
        return picked

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
        self._journal(records, f"The {len(records)} answer(s) for {cell_type!r} were", "give them again")
        for record in records:  # on disk first: an answer the session holds is one a reload holds
            self._replay(record)

    def assign(self, ids: Sequence[int], cell_type: str | None) -> None:
        """Give cells one type across the session, as a correction of their predicted type: yes for `cell_type`
        and no for every other type (None: no for every type), in one write. undo() takes back one answer."""
        ids_arr = self.cells.check_ids(ids)
        if cell_type is not None:
            self._type(cell_type, create=True)
        if not self.types:
            raise AgileInputError("No cell type in this session yet: name one (annotate or suggest) before assigning.")
        records = [
            {"type": name, "id": cid, "answer": name == cell_type} for cid in ids_arr.tolist() for name in self.types
        ]
        said = "no type" if cell_type is None else repr(cell_type)
        self._journal(records, f"The assignment of {len(ids_arr)} cell(s) to {said} was", "assign them again")
        for record in records:
            self._replay(record)

    def undo(self) -> tuple[str, int] | None:
        """Take back the last answer (the journal keeps both lines, so a reloaded session can undo further);
        returns (type, id) or None."""
        if not self._history:
            return None
        cell_type, cid, previous = self._history[-1]
        record = {"type": cell_type, "id": cid, "answer": previous, "undo": True}
        self._journal([record], f"The undo of cell {cid} ({cell_type!r}) was", "undo again")
        self._replay(record)
        return cell_type, cid

    def rename_type(self, old: str, new: str) -> None:
        """Rename a cell type, its answers, weights, colour and threshold with it (journalled, so a reload keeps it).
        A name already in use is refused: answers of two types are not merged silently."""
        state = self._type(old, create=False)
        if new in self.types or not isinstance(new, str) or not new.strip() or new == NONE_TYPE:
            taken = "is already a type of this session" if new in self.types else "is not a name"
            raise AgileInputError(f"Cannot rename {old!r} to {new!r}: {new!r} {taken}. Choose another name.")
        self._journal([{"type": state.name, "rename": new}], f"The renaming of {old!r} was", "rename it again")
        self._replay({"type": state.name, "rename": new})
        self._save_state()

    def delete_type(self, cell_type: str) -> None:
        """Remove a cell type with its answers, weights, colour and threshold (journalled; the journal keeps the old
        answers, but no undo brings them back)."""
        state = self._type(cell_type, create=False)
        self._journal([{"type": state.name, "delete": True}], f"The deletion of {cell_type!r} was", "delete it again")
        self._replay({"type": state.name, "delete": True})
        self._save_state()

    def _save_state(self) -> None:
        """session.json, and the adapted weights when there are any (they are stored by type name)."""
        if self.adapted:
            self._save_weights(self.store)
        else:
            self._write_meta()

    def _retype(self, old: str, new: str | None) -> None:
        """Move (or, for `new` None, drop) everything the session keeps under type name `old`, in place."""
        state = self.types.get(old, CellType(old))
        if new is None:
            self.types.pop(old, None)
        elif new in self.types:  # a reload: session.json already names the type, in its place
            state.name, state.answers = new, {**self.types[new].answers, **state.answers}
            self.types[new] = state
            self.types.pop(old, None)
        else:
            state.name = new
            self.types = {(new if k == old else k): v for k, v in self.types.items()}
            self.types.setdefault(new, state)
        if new is None:
            self._history = [entry for entry in self._history if entry[0] != old]
        else:
            self._history = [(new if t == old else t, cid, prev) for t, cid, prev in self._history]
        tables: tuple[dict, ...] = (self.colors, self.type_thresholds, self._feats, self._mc)
        for table in tables:
            if old in table:
                value = table.pop(old)
                if new is not None:
                    table[new] = value

    def _replay(self, record: dict) -> None:
        """Apply one journal line: an answer (kept in the undo history), the undo of the last one, or a type renamed
        or deleted."""
        if "rename" in record or record.get("delete"):
            self._retype(record["type"], record.get("rename"))
            return
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
        before = dict(self.colors)
        self.colors[cell_type] = f"#{r:02x}{g:02x}{b:02x}"
        try:
            self._write_meta()
        except AgileInputError:
            self.colors = before
            raise

    def set_threshold(self, cell_type: str, threshold: float | None) -> None:
        """The probability `cell_type` must reach to claim a cell, saved with the session (the widget's slider);
        None goes back to the session's threshold. The next adapt of the type chooses it again from the answers."""
        state = self._type(cell_type, create=False)
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1
        ):
            raise AgileInputError(f"A threshold is a probability from 0 to 1 (got {threshold!r} for {state.name!r}).")
        before = dict(self.type_thresholds)
        self.type_thresholds[state.name] = None if threshold is None else float(threshold)
        try:
            self._write_meta()
        except AgileInputError:
            self.type_thresholds = before
            raise

    def adapt(self, cell_type: str, steps: int = 1, lr: float | None = None) -> None:
        """`steps` gradient steps from the meta-trained weights on all answers for `cell_type` so far."""
        if cell_type not in self.types:
            known = list(self.types) or "none yet"
            raise AgileInputError(f"No cell type {cell_type!r} to adapt; the session knows {known}.")
        state = self.types[cell_type]
        if not state.answers:
            raise AgileInputError(
                f"No answers for {cell_type!r} yet: label a few cells first (suggest, then annotate)."
            )
        if not _is_whole(steps) or steps < 1:
            raise AgileInputError(f"steps must be a whole number, at least 1 (got {steps}).")
        if lr is not None and not lr > 0:
            raise AgileInputError(f"lr must be a positive step size (got {lr}); None takes the model's.")
        fast = self._fit(state, steps, lr, warn=True)
        before = state.params, state.steps, state.adapted_on
        state.params, state.steps, state.adapted_on = fast, steps, state.signature()
        self.type_thresholds[cell_type] = fit_threshold(self, cell_type, steps, lr)
        try:
            self._save_weights(self.store)
        except AgileInputError:
            state.params, state.steps, state.adapted_on = before  # not on disk: the session keeps its previous weights
            raise
        self._feats.pop(cell_type, None)
        self._mc.pop(cell_type, None)

    def _fit(self, state: CellType, steps: int, lr: float | None, warn: bool = False) -> Params:
        """Weights adapted in `steps` steps from the meta-trained ones on every answer of `state` (stored nowhere)."""
        y = torch.tensor([int(a) for a in state.answers.values()], device=self.device)
        if warn and y.min() == y.max():
            warnings.warn(
                f"All {len(y)} answers for {state.name!r} say {'yes' if y[0] else 'no'}: the model learns more "
                "from at least one cell of each kind.",
                stacklevel=2,
            )
        x = self._x[self._rows(list(state.answers))].float()
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + len(y))  # dropout masks: the same answers give the same weights
            fast = adapt_params(
                self.config,
                self._init,
                self.stats,
                x,
                y,
                self.model.inner_lr if lr is None else lr,
                steps,
                self.model.adapt_scope,
            )
        if not all(bool(torch.isfinite(v).all()) for v in fast.values()):
            raise AgileInputError(
                f"Adapting {state.name!r} diverged (non-finite weights): use a smaller learning "
                f"rate than {self.model.inner_lr if lr is None else lr} or fewer steps."
            )
        return {k: v.detach() for k, v in fast.items()}

    def _current_samples(self, state: CellType, progress: Progress | None = None) -> np.ndarray:
        """(T, N) MC-dropout probabilities under weights that saw every answer so far: the type's own when its last
        Adapt did, else a fresh fit (one step, not stored: Suggest never rests on the meta-init's uncertainty once
        answers exist; about 0.1 s with cached features)."""
        if not state.answers or (state.params is not None and state.adapted_on == state.signature()):
            return self._mc_samples(state.name, progress)
        key = state.signature()
        if self._fits.get(state.name, (None,))[0] != key:
            fit = self._fit(state, max(state.steps, 1), None)
            if self.model.adapt_scope == "head":  # a head-only fit keeps the meta-trained trunk and its features
                feats = self._features(None, progress)
            else:  # as Adapt's weights are sampled (_mc_samples): their own trunk features
                feats = trunk_features(self.config, fit, self.stats, self._x, progress=progress)
            self._fits[state.name] = (key, self._sample(fit, feats))
        return self._fits[state.name][1]

    def probabilities(self, cell_type: str, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(p, entropy) per cell for one type: MC-dropout mean probability and predictive entropy."""
        samples = self._mc_samples(self._type(cell_type, create=False).name, progress)
        return samples.mean(0), predictive_entropy(samples)

    def quality(self, cell_type: str) -> AnswerQuality:
        """How well an adapted type's answers are predicted when held out, and which answers the model contradicts
        (engine/quality.py): the check to make before trusting its predictions."""
        return answer_quality(self, cell_type)

    @property
    def adapted(self) -> list[str]:
        """The cell types that have adapted weights (those predict() types cells with), in the order added."""
        return [name for name, state in self.types.items() if state.params is not None]

    def predict(self, progress: Progress | None = None) -> pd.DataFrame:
        """Per cell: id, y, x, p_<type>, entropy_<type> for each adapted type, and the most probable `cell_type`.

        A type not adapted yet claims no cell (its weights are still the meta-trained ones, which know nothing of
        it) and is named in a warning. `progress(done, total)` counts cells over all types whose probabilities are
        not cached yet.
        """
        table = pd.DataFrame(
            {"id": self.cells.ids, "y": self.cells.table["y"].to_numpy(), "x": self.cells.table["x"].to_numpy()}
        )
        names = self.adapted
        waiting = [name for name in self.types if name not in names]
        if waiting:
            warnings.warn(
                f"Not adapted yet, so typing no cell: {', '.join(waiting)}. Answer a few suggested cells "
                "of each and adapt it (Adapt) first.",
                stacklevel=2,
            )
        probs = np.zeros((len(table), len(names)))
        for j, name in enumerate(names):
            step = None if progress is None else _offset(progress, j * len(table), len(names) * len(table))
            p, h = self.probabilities(name, step)
            table[f"p_{name}"], table[f"entropy_{name}"] = p, h
            probs[:, j] = p
        table["cell_type"] = assign_types(probs, names, [type_threshold(self, n) for n in names])
        return table

    def answer_table(self) -> pd.DataFrame:
        """Every answer given so far: one row per (cell_type, cell_id, answer), in the order the types were named."""
        rows = [
            (name, int(cid), bool(answer))
            for name, state in self.types.items()
            for cid, answer in state.answers.items()
        ]
        return pd.DataFrame(rows, columns=["cell_type", "cell_id", "answer"])

    def export(
        self,
        path: str | Path,
        table: pd.DataFrame | None = None,
        colors: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> Path:
        """Write the predictions (`table`, else predict()) by extension, in the session's colours (or `colors`):
        .csv, .geojson (QuPath detections with nucleus outlines), .h5ad (AnnData: marker means, types, centres,
        answers, model) or .zarr (SpatialData: the image, nucleus and cell-type labels, and that table)."""
        table = self.predict(progress) if table is None else table
        colors = {**default_colors(list(self.types)), **self.colors, **(colors or {})}
        suffix = Path(path).suffix.lower()
        if suffix not in (".h5ad", ".zarr"):
            return export_table(table, path, colors, self.cells.labels)
        from napari_agile import scverse  # anndata and spatialdata are an optional extra

        info = export_info(self._meta(), self.config, self.model, self.tissue, self.tissue_source)
        if suffix == ".h5ad":
            return scverse.write_anndata(table, path, self.tissue, self.cells, colors, self.answer_table(), info)
        types = self.paint(table)
        return scverse.write_spatialdata(table, path, self.tissue, self.cells, types, colors, self.answer_table(), info)

    def paint(self, table: pd.DataFrame | None = None) -> np.ndarray:
        """(Y, X) int32: every nucleus painted with its predicted type's index (1-based, session order)."""
        table = self.predict() if table is None else table
        codes = {name: i + 1 for i, name in enumerate(self.types)}
        return self._paint_cells(table["id"].to_numpy(), [codes.get(t, 0) for t in table["cell_type"]], np.int32)

    def paint_probability(self, cell_type: str, table: pd.DataFrame | None = None) -> np.ndarray:
        """(Y, X) float32: every nucleus painted with its probability of being `cell_type` (0 outside nuclei), the
        widget's probability view; from `table` (a predict() result) when given, else computed."""
        name = self._type(cell_type, create=False).name
        if table is None or f"p_{name}" not in table:
            return self._paint_cells(self.cells.ids, self.probabilities(name)[0], np.float32)
        return self._paint_cells(table["id"].to_numpy(), table[f"p_{name}"].to_numpy(), np.float32)

    def _paint_cells(self, ids: np.ndarray, values, dtype) -> np.ndarray:
        """The nucleus mask with each cell's pixels set to its value (0 elsewhere and for ids not given)."""
        if self.cells.labels is None:
            raise AgileInputError(
                "These cells have no nucleus mask to paint: detect nuclei, or pass Cells with labels."
            )
        lut = np.zeros(int(self.cells.labels.max()) + 1, dtype=dtype)
        ids = np.asarray(ids)
        keep = ids < lut.size
        lut[ids[keep]] = np.asarray(values, dtype=dtype)[keep]
        return lut[self.cells.labels]

    # ---- persistence ------------------------------------------------------------------------
    def _journal(self, records: list[dict], what: str, retry: str) -> None:
        """Append `records` to answers.jsonl, on disk before returning; a clear error saying `what` was not saved."""
        path = self.store / "answers.jsonl"
        with not_saved(what, path, retry):
            self.store.mkdir(parents=True, exist_ok=True)
            append_records(path, records)

    def _meta(self) -> dict:
        """What session.json holds: the types, their steps, the settings and the intensity scaling."""
        return {
            "format": "napari-agile-session/1",
            "types": list(self.types),
            "steps": {n: t.steps for n, t in self.types.items()},
            "mc_passes": self.mc_passes,
            "threshold": self.threshold,
            "seed": self.seed,
            "normalizer": self.normalizer.to_dict(),
            "channels": list(self.config.channels),
            "nuclear": [c for c, f in zip(self.config.channels, self.config.nuclear) if f],
            "tissue_source": self.tissue_source,
            "region": self.tissue.metadata.get("region"),  # the part of the section taught on (Tissue.crop)
            "patch_scale": self.scale,
            "colors": self.colors,
            "thresholds": self.type_thresholds,
            "profile": self.profile,
        }

    def _write_meta(self, folder: Path | None = None) -> None:
        """Write session.json into `folder` (the store by default), replaced in one step: a failed write keeps the
        last one."""
        path = (self.store if folder is None else folder) / "session.json"
        with not_saved("The session's settings (session.json) were", path, "repeat the last step"):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(self._meta(), indent=1).encode())

    def _save_weights(self, folder: Path) -> None:
        tensors = {f"stats/{k}": v.cpu() for k, v in self.stats.items()}
        for name, state in self.types.items():
            if state.params is not None:  # the dense layer and what adaptation changed; the rest is the model's
                head = head_keys(state.params)
                tensors.update(
                    {
                        f"type/{name}/{k}": v.cpu().contiguous()
                        for k, v in state.params.items()
                        if k in head or not torch.equal(v, self._init[k])
                    }
                )
        path = folder / "adapted.safetensors"
        with not_saved("The adapted weights were", path, "adapt again"):
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(path, save(tensors))
        self._write_meta()

    def _write_static(self, folder: Path) -> None:
        """What never changes in a session (model, cells, nucleus mask): written once, so a crash can reload."""
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / "model.safetensors")
        write_cell_table(self.cells, folder / "cells.csv")
        if self.cells.labels is not None:
            tifffile.imwrite(folder / "nuclei.tif", self.cells.labels, compression="zlib")

    def _create_store(self) -> None:
        """Write a new session's folder under a temporary name and rename it once complete: an interrupted start
        leaves no half session for a retry to reuse."""
        store = self.store.resolve()
        if store.is_dir() and any(store.iterdir()):
            raise AgileInputError(
                f"{store} already holds files but no session (session.json), e.g. from an "
                "interrupted start: choose a new or empty folder, or empty this one."
            )
        partial = store.with_name(f".{store.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            with not_saved("The new session was", store, "start it again"):
                self._write_static(partial)
                self._write_meta(partial)
                if store.is_dir():
                    store.rmdir()
                os.rename(partial, store)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def save(self, path: str | Path) -> Path:
        """Write the whole session to folder `path` (answers, adapted weights, model, cells) and keep saving there."""
        path = Path(path)
        if path.resolve() != self.store.resolve():
            if path.exists() and not path.is_dir():
                raise AgileInputError(f"{path} is a file: save a session into a folder (a new or empty one).")
            if (path / "session.json").exists():
                raise AgileInputError(
                    f"{path} already holds another session, whose answers saving here would "
                    "replace: choose a new or empty folder."
                )
            with not_saved("The session was", path, "save again"):
                self._write_static(path)
                (path / "answers.jsonl").unlink(missing_ok=True)
                if (self.store / "answers.jsonl").exists():  # every answer and undo, in the order given (for undo)
                    shutil.copyfile(self.store / "answers.jsonl", path / "answers.jsonl")
            self.store = path
        self._save_weights(path)
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        tissue: Tissue,
        device: str | None = None,
        progress: Progress | None = None,
        strict: bool = False,
    ) -> Session:
        """Reopen a saved (or crashed) session on its tissue: answers, adapted weights and cells as they were (a
        session taught on part of a section, `Tissue.crop`, takes that part of the whole section given).
        `progress(done, total)` follows the cutting of every cell's patch, as in `Session(...)`. A tissue that looks
        like another section than the session's is warned about, or refused (AgileInputError) when `strict`."""
        path = Path(path)
        if not (path / "session.json").exists():
            raise AgileInputError(f"{path} is not a napari-agile session folder (no session.json).")
        if not isinstance(tissue, Tissue):
            raise AgileInputError(
                f"Session.load(path, tissue) takes the section as a Tissue, not a {type(tissue).__name__}: "
                "Session.load(path, read_tissue(image_path))."
            )
        cells = read_cell_table(path / "cells.csv")
        region = read_session_meta(path).get("region")  # taught on part of a section: that part again
        if region is not None and tuple(tissue.shape) != (region[2] - region[0], region[3] - region[1]):
            tissue = tissue.crop(*region)
        if (path / "nuclei.tif").exists():
            cells.labels = read_mask(path / "nuclei.tif").astype(np.int32)
            if cells.labels.shape != tuple(tissue.shape):
                raise AgileInputError(
                    f"This session was made on a {cells.labels.shape[0]} x {cells.labels.shape[1]} px section, not "
                    f"on this {tissue.shape[0]} x {tissue.shape[1]} px one: open the section it was made on (for "
                    "another section, use Session.apply_saved / napari-agile predict)."
                )
        weights = path / "adapted.safetensors"
        tensors = read_adapted_weights(weights) if weights.exists() else {}
        # the statistics the weights were adapted under (a session saved before any adapt has none)
        stats = {k[len("stats/") :]: v for k, v in tensors.items() if k.startswith("stats/")} or None
        session, meta = cls._from_saved(
            path,
            tissue,
            cells,
            same_tissue=True,
            store=path,
            device=device,
            resume=True,
            stats=stats,
            progress=progress,
        )
        session.types = {name: CellType(name, steps=meta["steps"].get(name, 0)) for name in meta["types"]}
        for record in recover_journal(path / "answers.jsonl"):  # every whole record; a cut-off one is set aside
            session._replay(record)
        for name, state in session.types.items():
            state.params = saved_type_params(session._init, tensors, name)
        saved_source = meta.get("tissue_source")
        if other := session._other_section(saved_source, tissue.source):
            if strict:
                raise AgileInputError(other)
            warnings.warn(other, stacklevel=2)
        session.tissue_source = saved_source or session.tissue_source
        if json.loads(json.dumps(session._meta())) != meta:  # an older folder is brought up to date; else only read
            try:
                session._write_meta()
            except AgileInputError as err:
                warnings.warn(f"{err} The session is open, but what it learns now cannot be saved here.", stacklevel=2)
        return session

    def _other_section(self, saved_source: str | None, source: str | None) -> str | None:
        """Why a reloaded session's section is not the one it was made on (None: it is): by file name when both are
        files (napari layers name none), and otherwise by the channel percentiles it was scaled with (the same pixels
        give the same numbers: the sample is drawn with the session's seed)."""
        elsewhere = "Load it on that section (or, for another section, use Session.apply_saved / napari-agile predict)."
        files = [Path(src) for src in (saved_source, source) if src and Path(src).exists()]
        if len(files) == 2 and files[0].resolve() != files[1].resolve():
            return (
                f"This session was made on {saved_source}, not on {source}: its cells, nuclei and "
                f"intensity scaling are that section's. {elsewhere}"
            )
        fresh = fit_normalizer(self.tissue, seed=self.seed)
        if not (
            np.allclose(fresh.low, self.normalizer.low, rtol=1e-3, atol=1e-3)
            and np.allclose(fresh.high, self.normalizer.high, rtol=1e-3, atol=1e-3)
        ):
            return (
                "This section's intensities do not match the session's (the channel percentiles it was "
                "scaled with differ): it looks like another section than the one the session was made on. "
                f"{elsewhere}"
            )
        return None

    @staticmethod
    def check_saved(path: str | Path) -> Path:
        """`path` as a Path, or a clear error if it is not a saved session with adapted cell types (before a batch
        opens any image)."""
        saved = Path(path)
        if not (saved / "adapted.safetensors").exists():
            raise AgileInputError(
                f"{saved} is not a saved session with adapted cell types: adapt at least one type "
                "and save the session (widget: Save session…; Python: Session.save)."
            )
        read_session_meta(saved)
        read_adapted_weights(saved / "adapted.safetensors")
        load_model(saved / "model.safetensors")
        return saved

    @classmethod
    def apply_saved(
        cls,
        path: str | Path,
        tissue: Tissue,
        cells: Cells,
        store: str | Path | None = None,
        device: str | None = None,
        progress: Progress | None = None,
        channels: Sequence[str] | None = None,
        nuclear: Sequence[str] | None = None,
    ) -> Session:
        """A session on new tissue with the cell types adapted in the saved session `path` (for batch prediction).

        Batch-norm statistics are re-estimated on the new tissue; the answers stay with the original section. A model
        for any panel reads the saved session's channels and nuclear stains, or `channels` (of which `nuclear`, by
        default the saved nuclear stains among them, else by name) where the new tissue names them otherwise.
        """
        saved = cls.check_saved(path)
        session, meta = cls._from_saved(
            saved,
            tissue,
            cells,
            same_tissue=False,
            store=store,
            device=device,
            progress=progress,
            panel=(channels, nuclear),
        )
        unlike = unlike_message(meta.get("profile", {}), session.profile)
        if unlike:
            warnings.warn(unlike, stacklevel=2)
        tensors = read_adapted_weights(saved / "adapted.safetensors")
        for name in meta["types"]:
            params = saved_type_params(session._init, tensors, name)
            if params is not None:
                session.types[name] = CellType(name, params=params)
        session._write_meta()
        return session

    @classmethod
    def _from_saved(
        cls,
        path: Path,
        tissue: Tissue,
        cells: Cells,
        same_tissue: bool,
        panel: tuple[Sequence[str] | None, Sequence[str] | None] = (None, None),
        **kwargs,
    ) -> tuple[Session, dict]:
        """A session with the saved folder's model and settings (MC passes, threshold, seed; on the same tissue
        its intensity normaliser too), and the folder's session.json; `panel`: (channels, nuclear) instead of the
        saved ones."""
        meta = read_session_meta(path)
        normalizer = Normalizer.from_dict(meta["normalizer"]) if same_tissue else None
        model = load_model(path / "model.safetensors")
        channels, nuclear = saved_panel(meta, model, *panel)
        session = cls(
            tissue,
            cells,
            model,
            mc_passes=meta["mc_passes"],
            threshold=meta["threshold"],
            seed=meta["seed"],
            normalizer=normalizer,
            channels=channels,
            nuclear=nuclear,
            **kwargs,
        )
        session.colors = dict(meta.get("colors", {}))
        session.type_thresholds = dict(meta.get("thresholds", {}))
        return session, meta

    def adapted_model(self, cell_type: str) -> AgileModel:
        """The weights adapted to `cell_type`, as a model file others can load."""
        state = self._type(cell_type, create=False)
        if state.params is None:
            raise AgileInputError(f"{cell_type!r} has not been adapted yet: press Adapt (session.adapt) first.")
        info = dict(self.model.info, adapted_to=cell_type, answers=len(state.answers), steps=state.steps)
        return AgileModel(
            self.config,
            {k: v.cpu() for k, v in state.params.items()},
            self.model.inner_lr,
            self.model.adapt_scope,
            info,
        )


def panel_config(
    model: AgileModel, tissue: Tissue, channels: Sequence[str] | None, nuclear: Sequence[str] | None
) -> ModelConfig:
    """The model's config for this tissue: a fixed-panel model's own (the tissue must carry its channels); a
    per-channel model's bound to the chosen `channels` and `nuclear` stains, refused with what to do when they
    cannot work (a name the tissue lacks, no nuclear stain, no marker channel)."""
    cfg = model.config
    if not cfg.per_channel or cfg.channels:  # a fixed panel, or a per-channel model adapted to one panel
        check_channels(model, tissue.channel_names)
        if channels is not None and list(channels) != list(cfg.channels):
            raise AgileInputError(
                f"This model reads the channels {list(cfg.channels)} only; for a choice of "
                "channels use a model for any panel (napari_agile.load_model('any-panel'))."
            )
        return cfg
    names = list(tissue.channel_names if channels is None else channels)
    unknown = [n for n in names if n not in tissue.channel_names]
    if unknown:
        raise AgileInputError(f"No channel {unknown} in this tissue; it has {tissue.channel_names}.")
    if len(set(names)) < len(names):
        raise AgileInputError(
            f"Channel {sorted({n for n in names if names.count(n) > 1})} is chosen twice: choose each channel once."
        )
    if nuclear is None:
        flags = nuclear_flags(names)
    else:
        strays = [n for n in nuclear if n not in names]
        if strays:
            raise AgileInputError(f"The nuclear channel(s) {strays} are not among the chosen channels {names}.")
        flags = tuple(n in set(nuclear) for n in names)
    if not any(flags):
        raise AgileInputError(
            f"None of the channels {names} is marked as a nuclear stain (DAPI, Hoechst, "
            "Histone, DNA, ...): name the channel that stains every nucleus (nuclear=[...]; in the "
            "widget tick it under 'Nuclear channels')."
        )
    if all(flags):
        raise AgileInputError(
            f"Every chosen channel ({names}) is a nuclear stain: cell types are told apart by "
            "their markers, so include at least one marker channel."
        )
    return cfg.for_panel(names, flags)


def panel_choice(
    model: AgileModel, names: Sequence[str], channels: Sequence[str], nuclear: Sequence[str]
) -> dict[str, list[str]]:
    """`Session(...)`'s channels= and nuclear= for a user's ticks on a tissue with channels `names`: `channels` the
    ones the model is to read (the widget's 'Channels' ticks), `nuclear` the nuclear stains (its 'Nuclear channels'
    ticks, which detection sums too). A model for any panel reads the ticked channels in the tissue's order, of which
    the ticked nuclear stains are its nuclear ones (a nuclear stain left out of the model still serves detection); a
    fixed-panel model reads its own channels ({} here), so none of them may be left out. Refused, saying which ticks
    to change, where they cannot work."""
    chosen = [n for n in names if n in set(channels)]
    cfg = model.config
    if not cfg.per_channel or cfg.channels:
        left_out = [c for c in cfg.channels if c in names and c not in chosen]
        if left_out:
            raise AgileInputError(
                f"This model reads the channels {list(cfg.channels)}, so {left_out} cannot be left out: tick them "
                "under 'Channels', or use the model for any panel (empty the 'Model' field, or type any-panel), "
                "which reads the channels you tick."
            )
        return {}
    if not chosen:
        raise AgileInputError(
            f"No channel is ticked for the model: tick the channels it should read under "
            f"'Channels' (this tissue has {list(names)})."
        )
    marked = [n for n in chosen if n in set(nuclear)]
    if not marked:
        raise AgileInputError(
            f"None of the channels ticked for the model ({chosen}) is ticked as a nuclear stain: tick the channel "
            "that stains every nucleus (DAPI, Hoechst, DNA, ...) under 'Nuclear channels', and under 'Channels'."
        )
    if len(marked) == len(chosen):
        raise AgileInputError(
            f"Only nuclear stains ({chosen}) are ticked under 'Channels': cell types are told apart by their markers, "
            "so tick at least one marker channel there too."
        )
    return {"channels": chosen, "nuclear": marked}


def _check_inputs(tissue: object, cells: object) -> None:
    """A clear error for a Session given something else than a Tissue and Cells (an array, a mask, swapped)."""
    if not isinstance(tissue, Tissue):
        raise AgileInputError(
            f"Session(tissue, cells) takes a Tissue first, not a {type(tissue).__name__}: read_tissue(path), or "
            "Tissue(array, channel_names) for a (channels, rows, columns) array."
        )
    if not isinstance(cells, Cells):
        raise AgileInputError(
            f"Session(tissue, cells) takes Cells second, not a {type(cells).__name__}: detect_nuclei(tissue), or "
            "cells_from_labels(mask) for a nucleus label image."
        )


def session_bytes(cfg: ModelConfig, n_cells: int, mc_passes: int = MC_PASSES) -> int:
    """About what a Session holds per section: every cell's binned float16 patch, its float32 trunk features and
    the MC-dropout samples of one type."""
    per_cell = cfg.planes * cfg.input_size**2 * 2 + cfg.feature_size * 4 + mc_passes * 4
    return n_cells * per_cell


def check_memory(
    cfg: ModelConfig, n_cells: int, mc_passes: int = MC_PASSES, *, mask_pixels: int = 0, estimated: bool = False
) -> None:
    """A clear error, before any long work starts, when a session on `n_cells` cells would not fit in free memory,
    with a nucleus mask of `mask_pixels` int32 pixels beside it while nuclei are detected in memory. `estimated`:
    `n_cells` is `estimate_nuclei`'s floor, counted on sampled tiles before a detection."""
    need = session_bytes(cfg, n_cells, mc_passes) + 4 * mask_pixels
    free = short_of(need)
    if free is None:
        return
    what = f"At least {n_cells:,} nuclei (counted on sampled tiles)" if estimated else f"{n_cells:,} cells"
    held = "their patches and features and the nucleus mask" if mask_pixels else "their patches and features"
    raise AgileInputError(
        f"{what}: a session holds {held}, about {need / 1e9:.1f} GB, and this machine has {free / 1e9:.1f} GB "
        "free. Teach on a part of the section (tissue.crop(top, left, bottom, right); in the widget, 'Teach on: "
        "the part in view'), then type the whole section with type_sections / napari-agile predict, which holds a "
        "tile at a time."
    )


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


def _is_whole(value: object) -> TypeGuard[int]:
    """Whether `value` is a whole number (an int, not a bool or a float)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_settings(mc_passes: object, threshold: object) -> None:
    """A clear error for MC passes that are not a whole number >= 1, or a threshold that is not a probability."""
    if not _is_whole(mc_passes) or mc_passes < 1:
        raise AgileInputError(
            f"mc_passes={mc_passes!r}: use a whole number of MC-dropout passes, 1 or more (default 20)."
        )
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) or not 0 <= threshold <= 1:
        raise AgileInputError(
            f"threshold={threshold!r}: use a probability from 0 to 1 (default 0.5), the least a "
            "cell's most probable type needs."
        )


#: the keys every session.json holds, and their types
_META_KEYS: dict[str, type | tuple[type, ...]] = {
    "types": list,
    "steps": dict,
    "mc_passes": int,
    "threshold": (int, float),
    "seed": int,
    "normalizer": dict,
}


def saved_panel(
    meta: dict, model: AgileModel, channels: Sequence[str] | None, nuclear: Sequence[str] | None
) -> tuple[Sequence[str] | None, Sequence[str] | None]:
    """The (channels, nuclear stains) a saved session's model reads on new tissue: those given, else (a model for
    any panel) the saved ones, the saved nuclear stains kept among channels given anew."""
    if channels is None:
        channels = meta.get("channels") if model.config.per_channel else None
        nuclear = meta.get("nuclear") if nuclear is None and channels is not None else nuclear
    elif nuclear is None and model.config.per_channel:
        nuclear = [n for n in meta.get("nuclear") or () if n in channels] or None
    return channels, nuclear


def saved_type_params(init: Params, tensors: dict[str, torch.Tensor], name: str) -> Params | None:
    """A type's weights from a saved file: `init` (the model's, on its device) overwritten by what the file holds
    for the type (None if nothing)."""
    prefix = f"type/{name}/"  # exact weight names: type "a" must not take type "a/b"'s weights
    device = next(iter(init.values())).device
    saved = {
        k[len(prefix) :]: v.to(device) for k, v in tensors.items() if k.startswith(prefix) and k[len(prefix) :] in init
    }
    return {**init, **saved} if saved else None


def cell_scale(cfg: ModelConfig, cells: Cells) -> float:
    """How much to magnify the section so that its cells' nuclei are the model's size (patch_scale of their areas;
    1.0 for a table without areas)."""
    return patch_scale(cfg, cells.table["area"] if "area" in cells.table else [])


def stats_sample(n_cells: int, n: int, seed: int) -> np.ndarray:
    """Sorted row positions of the `n` cells (all, when fewer) whose patches give a section's batch-norm statistics:
    the same sample for a Session and for streamed typing with the same seed."""
    return np.sort(np.random.default_rng(seed).choice(n_cells, min(n, n_cells), replace=False))


def export_info(
    session: dict, config: ModelConfig, model: AgileModel, tissue: Tissue, source: str | None
) -> dict[str, object]:
    """What an .h5ad or SpatialData export records of how it was made: the `session` settings (session.json), the
    model (its panel `config`, step and training facts) and the tissue (its `source`, pixel size and channels)."""
    about_model = {
        "config": config.to_dict(),
        "inner_lr": model.inner_lr,
        "adapt_scope": model.adapt_scope,
        "info": model.info,
    }
    about_tissue = {"source": source, "pixel_size": tissue.pixel_size, "channels": list(tissue.channel_names)}
    return {"session": session, "model": about_model, "tissue": about_tissue}


def cut_size(cfg: ModelConfig, scale: float) -> int:
    """The side of the patch cut around each cell, so that magnified by `scale` (patch_scale) it is the model's."""
    return cfg.patch_size if scale == 1.0 else 2 * max(4, round(cfg.patch_size / scale / 2))


def read_session_meta(folder: Path) -> dict:
    """A session folder's session.json, checked; a clear error naming it when it is empty, cut off or damaged."""
    path = folder / "session.json"
    remedy = (
        "restore it from a copy of the session folder (the answers themselves are in answers.jsonl, one "
        "JSON line each)."
    )
    meta = read_json(path, remedy)
    wrong = [k for k, kind in _META_KEYS.items() if not isinstance(meta.get(k), kind) or isinstance(meta[k], bool)]
    if "types" not in wrong and not all(isinstance(t, str) for t in meta["types"]):
        wrong.append("types")
    if wrong:
        raise AgileInputError(f"{path} is damaged (missing or wrong {', '.join(wrong)}): {remedy}")
    try:
        _check_settings(meta["mc_passes"], meta["threshold"])
        Normalizer.from_dict(meta["normalizer"])
    except (AgileInputError, TypeError) as err:
        raise AgileInputError(f"{path} is damaged ({err}): {remedy}") from None
    return meta


def read_adapted_weights(path: Path) -> dict[str, torch.Tensor]:
    """A saved session's adapted weights; a clear error naming the file when it is cut off or damaged."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise AgileInputError(
            f"{path} is damaged ({err}): restore it from a copy of the session folder, or delete "
            "it and adapt the cell types again (their answers are kept in answers.jsonl)."
        ) from None
