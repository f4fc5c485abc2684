"""Nothing lost on a full disk or a damaged file (issue 29): a fault-injection suite (writes that fail after N bytes,
a read-only folder, an interrupted start) and a table-driven bad-input suite. Each bad input must raise
AgileInputError naming the file or parameter, and every acknowledged answer must still reload.
benchmarks/reliability.py adds kill -9 and real full-disk trials (docs/reliability.md)."""

import errno
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from safetensors.torch import load_file, save_file

from napari_agile import AgileInputError, Cells, Session, Tissue, detect_nuclei, read_tissue, simulate_tissue
from napari_agile.cli import main
from napari_agile.engine.meta import MetaConfig, meta_train
from napari_agile.engine.model_file import AgileModel, load_model
from napari_agile.engine.network import ModelConfig, init_params
from napari_agile.engine.tasks import TaskPool
from napari_agile.engine.training import train_from_config
from napari_agile.io import storage
from napari_agile.io.images import write_ome_tiff
from napari_agile.io.tissue import PAPER_CHANNELS

ROOT = Path(__file__).resolve().parents[1]


class World:
    """What every case starts from: a simulated section, a small model, and a saved session with answers and
    adapted weights (`folder`), copied afresh for each case that damages it."""

    def __init__(self, base: Path, tmp: Path):
        self.sim = simulate_tissue((320, 320), seed=7)
        self.data = np.asarray(self.sim.tissue.data, np.float32)
        cfg = ModelConfig(channels=PAPER_CHANNELS, centre_radius=14)
        self.model = AgileModel(cfg, init_params(cfg, seed=3), inner_lr=0.1)
        self.folder = base / "saved"
        if not (self.folder / "session.json").exists():
            s = self.session(self.folder)
            ids = s.cells.ids
            s.annotate("astrocyte", ids[:4], [True, False, True, False])
            s.adapt("astrocyte")
            s.annotate("astrocyte", ids[4:6], [False, True])
        self.tmp = tmp

    def session(self, store: Path, tissue: Tissue | None = None, **kw) -> Session:
        kw.setdefault("mc_passes", 4)
        return Session(self.sim.tissue if tissue is None else tissue, self.sim.cells, self.model, store=store, **kw)

    def copy(self) -> Path:
        """A fresh copy of the saved session, for a case to damage."""
        target = self.tmp / "copy"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self.folder, target)
        return target

    def tissue(self, data: np.ndarray, names=None) -> Tissue:
        return Tissue(data, list(names or self.sim.tissue.channel_names))


def answers(folder: Path, world: World) -> dict:
    """The answers a session folder reloads with, per type."""
    s = Session.load(folder, world.sim.tissue)
    return {name: dict(t.answers) for name, t in s.types.items()}


# ---- damaged files: each case damages one file of a copy of the saved session, then reopens it -----------------
def _cut(path: Path, keep: float = 0.5) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def _model_file(path: Path, tensors=None, **meta) -> None:
    """Rewrite a model file with other tensors and/or metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        old = fh.metadata()
    save_file(tensors if tensors is not None else load_file(str(path)), str(path), metadata={**old, **meta})


def _drop_tensor(path: Path) -> None:
    tensors = load_file(str(path))
    tensors.pop(sorted(tensors)[0])
    _model_file(path, tensors)


def _session_json(path: Path, change) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


DAMAGED = {  # case: (file in the session folder, how it is damaged)
    "session.json empty": ("session.json", lambda p: p.write_bytes(b"")),
    "session.json cut off": ("session.json", _cut),
    "session.json without normalizer": ("session.json", lambda p: _session_json(p, lambda m: m.pop("normalizer"))),
    "session.json with mc_passes 'ten'": (
        "session.json",
        lambda p: _session_json(p, lambda m: m.update(mc_passes="ten")),
    ),
    "session.json 100k deep": ("session.json", lambda p: p.write_text("[" * 100_000)),
    "adapted.safetensors cut off": ("adapted.safetensors", _cut),
    "adapted.safetensors empty": ("adapted.safetensors", lambda p: p.write_bytes(b"")),
    "model.safetensors cut off": ("model.safetensors", _cut),
    "model.safetensors missing a tensor": ("model.safetensors", _drop_tensor),
    "model.safetensors config of wrong type": (
        "model.safetensors",
        lambda p: _model_file(p, config=json.dumps({"channels": "DAPI", "dropout": "x"})),
    ),
    "model.safetensors config 100k deep": ("model.safetensors", lambda p: _model_file(p, config="[" * 100_000)),
    "cells.csv without x": ("cells.csv", lambda p: p.write_text(p.read_text().replace(",x,", ",z,", 1))),
    "cells.csv empty": ("cells.csv", lambda p: p.write_bytes(b"")),
    "nuclei.tif cut off": ("nuclei.tif", lambda p: _cut(p, 0.3)),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture()
def world(base, tmp_path):
    return World(base, tmp_path)


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_session_file_is_named_and_the_answers_stay(world, case):
    name, damage = DAMAGED[case]
    folder = world.copy()
    journal = (folder / "answers.jsonl").read_bytes()
    damage(folder / name)
    with pytest.raises(AgileInputError, match=name.replace(".", r"\.")):
        Session.load(folder, world.sim.tissue)
    assert (folder / "answers.jsonl").read_bytes() == journal  # the answers themselves are untouched


@pytest.mark.parametrize("case", ["adapted.safetensors cut off", "model.safetensors missing a tensor"])
def test_cli_predict_on_a_damaged_session_exits_2_with_one_line(world, case, tmp_path, capsys):
    name, damage = DAMAGED[case]
    folder = world.copy()
    damage(folder / name)
    image = write_ome_tiff(world.sim.tissue, tmp_path / "other.ome.tif")
    assert main(["predict", str(folder), str(image), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and name in err and "Traceback" not in err


def test_a_cut_off_last_answer_is_set_aside_and_the_next_starts_a_fresh_line(world):
    folder = world.copy()
    before = answers(folder, world)
    journal = folder / "answers.jsonl"
    with journal.open("ab") as fh:
        fh.write(b'{"type": "astrocyte", "id": 9, "ans')  # what a full disk leaves mid-record
    with pytest.warns(UserWarning, match="1 damaged line"):
        s = Session.load(folder, world.sim.tissue)
    assert {n: dict(t.answers) for n, t in s.types.items()} == before
    assert b'"ans\n' in (folder / "answers.jsonl.damaged").read_bytes()
    cid = int(s.cells.ids[10])
    s.annotate("astrocyte", [cid], [True])
    assert answers(folder, world)["astrocyte"] == {**before["astrocyte"], cid: True}


# ---- faults while writing: a disk that fills after N bytes, a read-only folder, an interrupted start -------------
class FullDisk:
    """storage._open replaced: files opened for writing take `budget` bytes in all, then fail with ENOSPC (or
    `error`) as a full disk or a read-only folder would."""

    def __init__(self, budget: int = 0, error: int = errno.ENOSPC):
        self.left, self.error = budget, error

    def __call__(self, path, mode="r", buffering=-1):
        if set(mode) <= {"r", "b"}:
            return open(path, mode, buffering=buffering)
        if self.error != errno.ENOSPC:
            raise OSError(self.error, os.strerror(self.error), str(path))
        return _Limited(open(path, mode, buffering=buffering), self)


class _Limited:
    def __init__(self, fh, disk: FullDisk):
        self._fh, self._disk = fh, disk

    def write(self, data) -> int:
        n = min(len(data), self._disk.left)
        if n == 0 and len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.left -= n
        return self._fh.write(data[:n])

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def annotate_on_full_disk(world: World, folder: Path, budget: int, monkeypatch) -> tuple[bool, dict]:
    """Answer one more cell with `budget` bytes left on the disk: (whether it was acknowledged, the answers in
    memory afterwards)."""
    s = Session.load(folder, world.sim.tissue)
    cid = int(s.cells.ids[20])
    with monkeypatch.context() as m:
        m.setattr(storage, "_open", FullDisk(budget))
        try:
            s.annotate("astrocyte", [cid], [True])
            acknowledged = True
        except AgileInputError as err:
            assert "not saved" in str(err) and "answers.jsonl" in str(err)
            acknowledged = False
    return acknowledged, {n: dict(t.answers) for n, t in s.types.items()}


@pytest.mark.parametrize("budget", [0, 1, 20, 44, 1000])
def test_an_answer_on_a_full_disk_is_refused_or_kept_never_half(world, budget, monkeypatch):
    folder = world.copy()
    before = answers(folder, world)
    acknowledged, in_memory = annotate_on_full_disk(world, folder, budget, monkeypatch)
    reloaded = answers(folder, world)
    assert reloaded == in_memory  # what the user was told is what is on disk
    assert (reloaded != before) == acknowledged
    assert not (folder / "answers.jsonl.damaged").exists()  # a failed write was cut back, not left half


def test_adapt_on_a_full_disk_keeps_the_previous_weights(world, monkeypatch):
    folder = world.copy()
    s = Session.load(folder, world.sim.tissue)
    before = {k: v.clone() for k, v in s.types["astrocyte"].params.items()}
    weights = (folder / "adapted.safetensors").read_bytes()
    monkeypatch.setattr(storage, "_open", FullDisk(100))
    with pytest.raises(AgileInputError, match="adapted weights were not saved.*adapted.safetensors"):
        s.adapt("astrocyte")
    assert all(torch.equal(before[k], v) for k, v in s.types["astrocyte"].params.items())
    assert (folder / "adapted.safetensors").read_bytes() == weights
    assert not list(folder.glob("*.tmp"))


def test_a_read_only_session_opens_and_refuses_new_answers_clearly(world, monkeypatch):
    folder = world.copy()
    before = answers(folder, world)
    monkeypatch.setattr(storage, "_open", FullDisk(error=errno.EROFS))
    s = Session.load(folder, world.sim.tissue)  # opening writes nothing
    with pytest.raises(AgileInputError, match="not saved.*Read-only file system"):
        s.annotate("astrocyte", [int(s.cells.ids[30])], [True])
    assert {n: dict(t.answers) for n, t in s.types.items()} == before


def test_an_interrupted_start_leaves_no_half_session(world, tmp_path, monkeypatch):
    store = tmp_path / "new"
    with monkeypatch.context() as m:
        m.setattr(storage, "_open", FullDisk(5000))
        with pytest.raises(AgileInputError, match="new session was not saved"):
            world.session(store)
    assert not store.exists() and not list(tmp_path.glob(".new.partial-*"))
    world.session(store)  # a retry starts cleanly once there is space
    assert (store / "session.json").exists()


def test_weights_follow_the_umask_like_every_other_file(world, tmp_path):
    old = os.umask(0o022)
    try:
        s = world.session(tmp_path / "s")
        s.annotate("astrocyte", s.cells.ids[:2], [True, False])
        s.adapt("astrocyte")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "s").iterdir()}
    assert set(modes.values()) == {0o644}, modes


# ---- bad input: each a clear error naming the parameter or the file, the session untouched ---------------------
def _nan_outside_samples(w: World):
    big = np.tile(w.data, (1, 4, 4))
    big[:, 700:720, 1000:1010] = np.nan  # between check_tissue's sampled tiles
    detect_nuclei(w.tissue(big))


def _cut_tiff(w: World, keep: float):
    path = write_ome_tiff(w.sim.tissue, w.tmp / "full.ome.tif")
    cut = w.tmp / "cut.ome.tif"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    detect_nuclei(read_tissue(cut))


def _cells_with(w: World, row: int, **values):
    table = w.sim.cells.table.reset_index(drop=True)
    for col, v in values.items():
        table.loc[row, col] = v
    return Cells(table, w.sim.cells.labels)


def _pickle_payload(w: World):
    """A model file that would run code if unpickled: loading it must refuse, and the marker must not appear."""
    marker = w.tmp / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = w.tmp / "model.safetensors"
    path.write_bytes(pickle.dumps(Payload()))
    try:
        load_model(path)
    finally:
        assert not marker.exists()


def _damaged_checkpoint(w: World):
    out = w.tmp / "train"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut off")
    cfg = ModelConfig(channels=tuple("abc"), patch_size=32, bin=1)
    x = torch.rand(40, 3, 32, 32).half()
    pool = TaskPool(x, np.array(["p", "q"] * 20), np.arange(40) % 2)
    meta_train(cfg, MetaConfig(iterations=2, tasks_per_batch=1, k_max=2, n_query=2), pool, None, out)


def _recipe_value(w: World, key: str, value: str):
    text = (ROOT / "configs" / "bundled-model.toml").read_text()
    lines = [f"{key} = {value}" if line.split("=")[0].strip() == key else line for line in text.splitlines()]
    path = w.tmp / "recipe.toml"
    path.write_text("\n".join(lines))
    train_from_config(path, w.tmp / "out")


def _live(w: World):
    return w.session(w.tmp / "live")


BAD_INPUTS = {  # case: (what is tried, a word the message must hold)
    "NaN pixels between the sampled tiles": (_nan_outside_samples, "NaN"),
    "an infinite nuclear pixel": (
        lambda w: detect_nuclei(w.tissue(np.where(np.arange(320) == 5, np.inf, w.data))),
        "infinite",
    ),
    "OME-TIFF cut at 10%": (lambda w: _cut_tiff(w, 0.1), "cut.ome.tif"),
    "OME-TIFF cut at 60%": (lambda w: _cut_tiff(w, 0.6), "cut.ome.tif"),
    "OME-TIFF cut at 99%": (lambda w: _cut_tiff(w, 0.99), "cut.ome.tif"),
    "a yes/no image": (lambda w: w.tissue(w.data > 0.5), "boolean"),
    "a complex image": (lambda w: w.tissue(w.data.astype(np.complex64)), "complex"),
    "a 2D image": (lambda w: Tissue(w.data[0], ["DAPI"]), "channels, rows, columns"),
    "fewer names than channels": (lambda w: w.tissue(w.data, ["DAPI"]), "channel names"),
    "duplicate channel names": (lambda w: w.tissue(w.data[:2], ["DAPI", "DAPI"]), "repeated"),
    "an empty channel name": (lambda w: w.tissue(w.data[:2], ["DAPI", " "]), "no name"),
    "an array as the tissue": (lambda w: Session(w.data, w.sim.cells, w.model, store=w.tmp / "s"), "Tissue("),
    "a mask as the cells": (
        lambda w: Session(w.sim.tissue, w.sim.cells.labels, w.model, store=w.tmp / "s"),
        "cells_from_labels",
    ),
    "cells where Session.load takes the device": (
        lambda w: Session.load(w.copy(), w.sim.tissue, w.sim.cells),
        "device",
    ),
    "diameter 10000": (lambda w: detect_nuclei(w.sim.tissue, diameter=10000), "diameter"),
    "diameter NaN": (lambda w: detect_nuclei(w.sim.tissue, diameter=float("nan")), "diameter"),
    "diameter inf": (lambda w: detect_nuclei(w.sim.tissue, diameter=float("inf")), "diameter"),
    "diameter 0": (lambda w: detect_nuclei(w.sim.tissue, diameter=0), "diameter"),
    "a NaN centroid": (lambda w: _cells_with(w, 2, y=np.nan), "centre"),
    "a centroid far outside": (
        lambda w: Session(w.sim.tissue, _cells_with(w, 2, y=1e12), w.model, store=w.tmp / "s"),
        "outside",
    ),
    "no cells": (lambda w: Session(w.sim.tissue, w.sim.cells.subset([]), w.model, store=w.tmp / "s"), "no cells"),
    "mc_passes 0": (lambda w: w.session(w.tmp / "s", mc_passes=0), "mc_passes"),
    "threshold 1.5": (lambda w: w.session(w.tmp / "s", threshold=1.5), "threshold"),
    "threshold NaN": (lambda w: w.session(w.tmp / "s", threshold=float("nan")), "threshold"),
    "suggest n=2.5": (lambda w: _live(w).suggest("astrocyte", n=2.5), "n=2.5"),
    "suggest n=0": (lambda w: _live(w).suggest("astrocyte", n=0), "n=0"),
    "adapt before any answer": (lambda w: _live(w).adapt("astrocyte"), "astrocyte"),
    "adapt steps=0": (lambda w: Session.load(w.copy(), w.sim.tissue).adapt("astrocyte", steps=0), "steps"),
    "adapt lr=NaN": (lambda w: Session.load(w.copy(), w.sim.tissue).adapt("astrocyte", lr=float("nan")), "lr"),
    "a type threshold of 2": (
        lambda w: Session.load(w.copy(), w.sim.tissue).set_threshold("astrocyte", 2),
        "threshold",
    ),
    "an unknown adapt_scope": (
        lambda w: AgileModel(w.model.config, w.model.params, 0.1, adapt_scope="heads"),
        "adapt_scope",
    ),
    "a pickle posing as a model": (_pickle_payload, "model.safetensors"),
    "a damaged meta-training checkpoint": (_damaged_checkpoint, "checkpoint.pt"),
    "a recipe with iterations = 'ten'": (lambda w: _recipe_value(w, "iterations", "'ten'"), "iterations"),
    "a recipe with lr = true": (lambda w: _recipe_value(w, "inner_lr", "true"), "inner_lr"),
    "a nuclear stain only": (
        lambda w: Session(w.tissue(w.data[:1], ["DAPI"]), w.sim.cells, store=w.tmp / "s"),
        "marker",
    ),
    "no nuclear stain": (
        lambda w: Session(w.tissue(w.data[2:5], ["a", "b", "c"]), w.sim.cells, store=w.tmp / "s"),
        "nuclear",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_named_and_no_answer_is_lost(world, case):
    attempt, word = BAD_INPUTS[case]
    before = answers(world.folder, world)
    with pytest.raises(AgileInputError) as err:
        attempt(world)
    assert word.lower() in str(err.value).lower()
    assert "Traceback" not in str(err.value) and len(str(err.value)) < 600
    assert answers(world.folder, world) == before


def test_channel_problems_are_said_before_the_long_work(world, tmp_path):
    data = world.data.copy()
    data[3] = 0
    data[5] = 65535
    with pytest.warns(UserWarning) as said:
        world.session(tmp_path / "s", tissue=world.tissue(data.astype(np.uint16)))
    text = " ".join(str(w.message) for w in said)
    assert "'S100' is all zero" in text and "'Iba1' is constant" in text


def test_a_partly_saturated_channel_is_named(world, tmp_path):
    data = (world.data * 1000).astype(np.uint16)
    data[4, :, :100] = 65535  # a third of Olig2 clipped
    with pytest.warns(UserWarning, match="'Olig2' is saturated \\(at 65535\\) in [0-9]+% of the sampled pixels"):
        world.session(tmp_path / "s", tissue=world.tissue(data))


def test_a_section_without_nuclei_is_said(world):
    with pytest.warns(UserWarning, match="No nuclei found in \\['DAPI', 'Histones'\\]"):
        assert len(detect_nuclei(world.tissue(np.zeros_like(world.data)))) == 0


def test_a_damaged_tile_in_the_middle_of_a_section_names_the_file_and_the_rows(world, tmp_path):
    path = tmp_path / "tiled.ome.tif"
    tifffile.imwrite(
        path,
        (world.data * 1000).astype(np.uint16),
        tile=(64, 64),
        compression="zlib",
        metadata={"axes": "CYX", "Channel": {"Name": list(PAPER_CHANNELS)}},
        ome=True,
    )
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        offset, count = page.dataoffsets[12], page.databytecounts[12]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + count] = b"\0" * count  # one zlib tile of DAPI overwritten
    path.write_bytes(bytes(raw))
    with pytest.raises(AgileInputError, match="tiled.ome.tif.*damaged") as err:
        detect_nuclei(read_tissue(path), tile=128)  # read_tissue's sampled tiles meet it first
    assert "rows 0-256, columns 0-256" in str(err.value)
