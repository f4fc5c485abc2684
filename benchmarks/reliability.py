"""Answers lost to kill -9 and to a really full disk (docs/reliability.md); the bad-input and fault-injection table
is tests/test_reliability.py.

    python benchmarks/reliability.py --kills 20

Kill trials: a child process reopens a saved session and answers cells one by one, printing each id once
`annotate` has returned (acknowledged); it is killed with SIGKILL at a random moment; the session is reloaded and
every acknowledged answer must be there. Full-disk trial (root, where tmpfs can be mounted): the session is copied
onto a tmpfs with a few KB free and answered until the disk is full; then it must reload with every acknowledged
answer, and take new ones once space is freed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from napari_agile import AgileInputError, Session, simulate_tissue
from napari_agile.engine.model_file import AgileModel
from napari_agile.engine.network import ModelConfig, init_params
from napari_agile.io.tissue import PAPER_CHANNELS

SECTION = ((512, 512), 7)  # size and seed of the simulated section


def _tissue():
    return simulate_tissue(*SECTION)


def make_session(folder: Path) -> None:
    sim = _tissue()
    cfg = ModelConfig(channels=PAPER_CHANNELS, centre_radius=14)
    Session(sim.tissue, sim.cells, AgileModel(cfg, init_params(cfg, seed=3), inner_lr=0.1), store=folder, mc_passes=2)


def answers_in_order(ids: np.ndarray):
    """(id, answer) for ever: every cell yes, then every cell no, and so on (each answer replaces the last)."""
    for round_ in range(10**6):
        for cid in ids:
            yield int(cid), round_ % 2 == 0


def child(folder: Path, cell_type: str) -> None:
    """Answer the section's cells for `cell_type` until killed, printing each acknowledged answer."""
    warnings.simplefilter("ignore")  # "new cell type next to 'trial-1': a typo?"
    s = Session.load(folder, _tissue().tissue)
    print("ready", flush=True)
    for cid, answer in answers_in_order(s.cells.ids):
        s.annotate(cell_type, [cid], [answer])
        print(cid, int(answer), flush=True)


def lost_answers(acked: list[tuple[int, bool]], saved: dict[int, bool], ids: np.ndarray) -> int:
    """Cells whose reloaded answer is not the last one acknowledged (the one in flight at the kill may be either)."""
    last = dict(acked)
    in_flight = next(a for i, a in enumerate(answers_in_order(ids)) if i == len(acked))
    return sum(
        saved.get(cid) != answer and not (cid == in_flight[0] and saved.get(cid) == in_flight[1])
        for cid, answer in last.items()
    )


def kill_trial(folder: Path, trial: int, rng: np.random.Generator) -> tuple[int, int]:
    """(acknowledged, lost) answers of one child killed at a random moment after it starts answering."""
    name = f"trial-{trial}"
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(folder), name], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(rng.uniform(0.05, 2.0))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    words = out.split()
    acked = [(int(c), bool(int(a))) for c, a in zip(words[::2], words[1::2])]
    reloaded = Session.load(folder, _tissue().tissue)
    saved = reloaded.types[name].answers if name in reloaded.types else {}
    return len(acked), lost_answers(acked, saved, reloaded.cells.ids)


def full_disk_trial(folder: Path) -> dict | None:
    """Answers given until a small tmpfs is full: acknowledged, lost after reload, and whether answering works
    again once space is freed; None where tmpfs cannot be mounted."""
    mount = Path(tempfile.mkdtemp(prefix="agile-full-"))
    size = sum(p.stat().st_size for p in folder.iterdir()) + 64 * 1024
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        mount.rmdir()
        return None
    try:
        shutil.copytree(folder, mount / "s")
        ballast = mount / "ballast"
        free = shutil.disk_usage(mount).free
        ballast.write_bytes(b"\0" * max(free - 8 * 1024, 0))  # leave 8 KB: some 200 answers
        s = Session.load(mount / "s", _tissue().tissue)
        acked, refused = [], None
        for cid, answer in answers_in_order(s.cells.ids):
            try:
                s.annotate("full", [cid], [answer])
                acked.append((cid, answer))
            except AgileInputError as err:
                refused = str(err)
                break
        saved = Session.load(mount / "s", _tissue().tissue).types["full"].answers
        lost = sum(saved.get(c) != a for c, a in dict(acked).items())
        ballast.unlink()
        s.annotate("full", [acked[0][0]], [not dict(acked)[acked[0][0]]])  # space freed: the next answer is taken
        after = Session.load(mount / "s", _tissue().tissue).types["full"].answers
        return {
            "acknowledged": len(acked),
            "lost": lost,
            "refused_with": refused,
            "answer_after_freeing_kept": after[acked[0][0]] != dict(acked)[acked[0][0]],
        }
    finally:
        subprocess.run(["umount", "--lazy", str(mount)])
        shutil.rmtree(mount, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(Path(args.child[0]), args.child[1])
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "session"
        make_session(folder)
        kills = [kill_trial(folder, t, rng) for t in range(args.kills)]
        full = full_disk_trial(folder)
    report = {
        "kill_trials": len(kills),
        "acknowledged": sum(a for a, _ in kills),
        "lost": sum(lost for _, lost in kills),
        "full_disk": full,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
