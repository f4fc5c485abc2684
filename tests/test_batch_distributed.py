"""Batch typing on a real dask.distributed LocalCluster: the same tables as in this process, bad images named, resume."""

import os
from functools import partial
from pathlib import Path

import dask
import pandas as pd
import pytest

from napari_agile.batch import _connect, _typed, type_sections
from napari_agile.cli import main


@pytest.fixture(scope="module")
def sections(tmp_path_factory, adapted_session) -> tuple[Path, list[Path]]:
    """A saved session with `neuron` adapted, and three images to type: two small sections and a missing file."""
    from napari_agile.io.images import write_ome_tiff
    from napari_agile.synth.simulator import simulate_tissue

    folder = tmp_path_factory.mktemp("sections")
    adapted_session(folder / "session", (192, 192))
    images = [write_ome_tiff(simulate_tissue((160, 160), seed=s).tissue, folder / f"s{s}.ome.tif") for s in (5, 6)]
    return folder / "session", [*images, folder / "missing.ome.tif"]


def test_a_local_cluster_types_as_this_process_does_and_a_rerun_resumes(sections, tmp_path, capsys):
    session, images = sections
    here = type_sections(session, images, tmp_path / "here")
    heard, counted = [], []
    with pytest.warns(UserWarning, match="looks unlike the one"):  # a worker's warnings are said here too
        there = type_sections(
            session,
            images,
            tmp_path / "there",
            scheduler="local",
            workers=2,
            on_typed=heard.append,
            progress=lambda done, total: counted.append((done, total)),
        )
    assert [r.image for r in there] == images and sorted(map(str, (r.image for r in heard))) == sorted(map(str, images))
    assert counted == [(1, 3), (2, 3), (3, 3)]
    for a, b in zip(here[:2], there[:2]):
        assert a.error is None and b.error is None and a.n_cells == b.n_cells > 0
        mine, theirs = pd.read_csv(a.table), pd.read_csv(b.table)
        assert list(mine["id"]) == list(theirs["id"]) and list(mine["cell_type"]) == list(theirs["cell_type"])
        pd.testing.assert_frame_equal(mine, theirs, check_exact=False, rtol=1e-5)
    assert here[2].table is None and "missing.ome.tif" in here[2].error  # the bad image: named with its reason
    assert there[2].table is None and "No such file" in there[2].error and "missing.ome.tif" in there[2].error

    out = tmp_path / "there"
    kept = out / "s5.csv"
    before = kept.stat().st_mtime_ns
    (out / "s6.csv").unlink()  # as if the run had stopped before s6
    stale = out / ".s5.csv.partial.csv"
    stale.write_text("half a table")
    again = ["predict", str(session), *map(str, images[:2]), "--out", str(out)]
    assert main([*again, "--scheduler", "local", "--workers", "1"]) == 0
    said = "".join(capsys.readouterr())
    assert f"{images[0]}: already typed -> {kept}" in said and f"{images[1]}: " in said and "cells ->" in said
    assert kept.stat().st_mtime_ns == before and (out / "s6.csv").exists() and not stale.exists()
    [redo] = type_sections(session, images[:1], out, overwrite=True)
    assert not redo.resumed and redo.n_cells > 0 and kept.stat().st_mtime_ns > before
    pd.testing.assert_frame_equal(pd.read_csv(kept), pd.read_csv(here[0].table))


def test_a_section_whose_worker_dies_is_run_again_then_named(tmp_path):
    def dies(tries: Path, image: Path, deaths: int) -> str:
        """Kill the worker process mid-section the first `deaths` times, counting them in files under `tries`."""
        done = len(list(tries.glob(f"{image.name}-*")))
        if done < deaths:
            (tries / f"{image.name}-{done}").touch()
            os._exit(1)
        return f"typed {image.name}"

    with _connect("local", 1, retries=1) as client:  # a task may lose 1 worker and still run
        assert dict(_typed(client, {0: partial(dies, tmp_path, Path("a.tif"), 1)}, retries=1)) == {0: "typed a.tif"}
        [(_, failed)] = _typed(client, {1: partial(dies, tmp_path, Path("b.tif"), 99)}, retries=1)
    assert failed.table is None and "b.tif was not typed on the cluster: KilledWorker" in failed.error


def test_a_bad_scheduler_address_is_a_clear_message_before_any_work(sections, tmp_path, capsys):
    session, images = sections
    predict = ["predict", str(session), str(images[0]), "--out", str(tmp_path / "none")]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        for address in ("tcp://127.0.0.1:1", "nowhere"):
            assert main([*predict, "--scheduler", address]) == 2
            err = capsys.readouterr().err
            assert f"No dask scheduler at '{address}'" in err and "--scheduler local" in err and "Traceback" not in err
    assert main([*predict, "--workers", "2"]) == 2
    assert "with --scheduler local" in capsys.readouterr().err
    assert not (tmp_path / "none" / "s5.csv").exists()


def test_a_local_cluster_from_a_script_without_a_main_guard_is_refused(sections, tmp_path):
    """Its workers would import the script again and the call would wait for ever: refused, saying what to do."""
    import subprocess
    import sys

    session, images = sections
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import napari_agile as agile\n"
        f"agile.type_sections({str(session)!r}, [{str(images[0])!r}], {str(tmp_path / 'out')!r}, scheduler='local')\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and 'under `if __name__ == "__main__":`' in done.stderr
    assert not (tmp_path / "out" / "s5.csv").exists()
