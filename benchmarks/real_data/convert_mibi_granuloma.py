#!/usr/bin/env python
"""Convert the MIBI-TOF tuberculosis-granuloma example FOV ("Point14") that was
once committed to angelolab/ark-analysis into AGILE validation files.

Source: git history of https://github.com/angelolab/ark-analysis
  commit f3ae8cbb49ada423a9c01c2ed9174d87c44c439a (2021-01-18)
  data/example_dataset/flowsom_data/TIFs/Point14/TIFsNoAgg/*.tif   (47 single-channel 1024x1024 uint16 count images)
  data/example_dataset/flowsom_data/segmentationmask_SampleID14.tif (whole-cell label mask, DeepCell)
  data/example_dataset/spatial_enrichment_input_data/markerThresholds.csv (authors' per-marker positivity thresholds,
      on size-normalised, arcsinh, 99.9th-percentile-normalised expression; committed 2022-09-01, 1197dc5f)
The data come from McCaffrey et al., "The immunoregulatory landscape of human
tuberculosis granulomas", Nat Immunol 2022 (MIBI-TOF).

There is NO per-cell ground truth for this FOV in the repository; labels written
here are marker-positivity calls obtained by GATING per-cell mean intensities
(see README.md). They are reproducible, not expert annotations.

Usage:
  python convert_mibi_granuloma.py /work/.mirror/angelolab+ark-analysis/repo OUTDIR
(the first argument is the bare git dir that `fetch` produced, or any clone of
ark-analysis with full history). Needs numpy, pandas, tifffile, scikit-image, git.
"""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from skimage.measure import regionprops_table

COMMIT = "f3ae8cbb49ada423a9c01c2ed9174d87c44c439a"
THRESH_COMMIT = "1197dc5f790f3cd764b264e861008ac259e16d7d"
TIF_DIR = "data/example_dataset/flowsom_data/TIFs/Point14/TIFsNoAgg"
MASK = "data/example_dataset/flowsom_data/segmentationmask_SampleID14.tif"
THRESH = "data/example_dataset/spatial_enrichment_input_data/markerThresholds.csv"

# elemental / background mass channels that are not antibody stains
NON_MARKERS = {"Au", "Background", "C", "Ca", "Fe", "Na", "Si", "Ta"}
NUCLEAR = "HH3"  # histone H3, the nuclear channel
# arcsinh cofactor applied to mean counts per pixel. 1/30 was chosen by
# matching the per-marker quantiles of the authors' own normalised cell table
# for FOVs 6/7 of the same cohort (example_expression_matrix_clustered.csv);
# the authors' thresholds below are defined on that scale.
COFACTOR = 1.0 / 30.0
PCT = 99.9  # percentile used for per-marker normalisation
MIN_AREA = 30  # px; smaller objects are segmentation specks
MAX_AREA = 50000  # px; only the background label (id 1) is larger


def git(gitdir, *args):
    return subprocess.run(["git", "--git-dir", str(gitdir), *args], check=True, capture_output=True).stdout


def read_tif(gitdir, commit, path):
    return tifffile.imread(io.BytesIO(git(gitdir, "show", f"{commit}:{path}")))


def norm_name(s):
    # markerThresholds.csv uses R-style names (Collagen.1, HLA.DR.DQ.DP, PD.1, ...)
    return s.replace("-", ".")


def main(gitdir, outdir):
    gitdir, outdir = Path(gitdir), Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    listing = git(gitdir, "ls-tree", "--name-only", f"{COMMIT}:{TIF_DIR}").decode().split()
    names = sorted(Path(f).stem for f in listing if f.endswith(".tif"))
    markers = [n for n in names if n not in NON_MARKERS]
    markers.remove(NUCLEAR)
    channels = [NUCLEAR] + sorted(markers, key=str.lower)
    img = np.stack([read_tif(gitdir, COMMIT, f"{TIF_DIR}/{c}.tif") for c in channels]).astype(np.uint16)
    mask = read_tif(gitdir, COMMIT, MASK).astype(np.int32)
    assert mask.shape == img.shape[1:], (mask.shape, img.shape)
    # label 1 of this (MATLAB-era) mask is the background / unsegmented region
    # (~375k px); also drop specks. Remaining ids are kept unchanged.
    areas = np.bincount(mask.ravel())
    drop = np.flatnonzero((areas > 0) & ((areas < MIN_AREA) | (areas > MAX_AREA)))
    mask[np.isin(mask, drop)] = 0

    tifffile.imwrite(
        outdir / "image.ome.tif",
        img,
        ome=True,
        photometric="minisblack",
        metadata={"axes": "CYX", "Channel": {"Name": channels}},
        compression="zlib",
    )
    tifffile.imwrite(outdir / "nuclei.tif", mask, compression="zlib")
    (outdir / "channels.txt").write_text("\n".join(channels) + "\n")

    # per-cell mean counts (cell-size normalised), arcsinh, 99.9th-percentile normalised
    props = regionprops_table(
        mask,
        intensity_image=np.moveaxis(img, 0, -1).astype(np.float32),
        properties=("label", "centroid", "area", "intensity_mean"),
    )
    df = pd.DataFrame(
        {
            "id": props["label"].astype(int),
            "y": np.round(props["centroid-0"], 2),
            "x": np.round(props["centroid-1"], 2),
            "area": props["area"].astype(int),
        }
    )
    expr = np.stack([props[f"intensity_mean-{i}"] for i in range(len(channels))], 1)
    expr = np.arcsinh(expr / COFACTOR)
    scale = np.percentile(expr, PCT, axis=0)
    scale[scale == 0] = 1.0
    expr = np.clip(expr / scale, 0, None)
    edf = pd.DataFrame(expr, columns=channels)

    thr = pd.read_csv(io.BytesIO(git(gitdir, "show", f"{THRESH_COMMIT}:{THRESH}")))
    thr = dict(zip(thr["marker"], thr["Threshold"]))
    used = {}
    for c in channels:
        t = thr.get(norm_name(c))
        if t is None or c == NUCLEAR:
            continue
        used[c] = float(t)
        df[f"{c}_pos"] = edf[c] > t

    def pos(c):  # boolean positivity column (all False for an unthresholded marker)
        return df[f"{c}_pos"] if f"{c}_pos" in df else pd.Series(False, index=df.index)

    # lineage call: each lineage gets the best (expression / threshold) ratio over
    # its markers; a cell takes the lineage with the highest ratio if that ratio
    # exceeds 1 (i.e. it is positive for at least one lineage marker).  Taking the
    # dominant marker instead of a first-match rule limits spill-over artefacts in
    # dense aggregates (e.g. CD20+ cells picking up CD3 signal from neighbours).
    lineages = {
        "T_cell": ["CD3"],
        "B_cell": ["CD20"],
        "myeloid": ["CD68", "CD163", "CD14", "CD11c"],
        "neutrophil": ["MPO"],
        "endothelial": ["CD31"],
        "epithelial": ["Keratin-pan", "E-cadherin"],
        "fibroblast_stroma": ["SMA"],
    }
    ratios = pd.DataFrame({lin: np.max(np.stack([edf[m] / used[m] for m in ms]), 0) for lin, ms in lineages.items()})
    best = ratios.idxmax(axis=1)
    ct = pd.Series(np.where(ratios.max(axis=1) > 1, best, "unassigned"), index=df.index, dtype=object)
    ct[(ct == "unassigned") & pos("CD45")] = "immune_other"
    # T-cell subsets by the dominant co-receptor
    r4, r8 = edf["CD4"] / used["CD4"], edf["CD8"] / used["CD8"]
    tmask = ct == "T_cell"
    ct[tmask & (r8 > 1) & (r8 >= r4)] = "CD8_T"
    ct[tmask & (r4 > 1) & (r4 > r8)] = "CD4_T"
    df.insert(3, "cell_type", ct)
    df.to_csv(outdir / "cells.csv", index=False)
    edf.insert(0, "id", df["id"])
    edf.round(4).to_csv(outdir / "cell_expression_normalised.csv", index=False)
    (outdir / "gating.json").write_text(
        json.dumps(
            {
                "source_commit": COMMIT,
                "threshold_commit": THRESH_COMMIT,
                "cofactor": COFACTOR,
                "percentile": PCT,
                "thresholds": used,
                "lineage_markers": lineages,
            },
            indent=1,
        )
    )
    print("image", img.shape, img.dtype, "cells", len(df))
    print(df["cell_type"].value_counts().to_string())
    print({c: int(df[f"{c}_pos"].sum()) for c in used})


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
