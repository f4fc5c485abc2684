#!/usr/bin/env python
"""Convert the cytomapper toy IMC data set (Damond et al. 2019, human pancreas,
type 1 diabetes) into AGILE validation files.

Source: https://github.com/BodenmillerGroup/cytomapper
  commit a985bd6952ffa9639674c940c702ea4cd627592e
  inst/extdata/{E34,G01,J02}_imc.tiff   5 x 100 x 100 float32 IMC stacks
  inst/extdata/{E34,G01,J02}_mask.tiff  100 x 100 whole-cell masks (ids = CellNb)
  data/pancreasSCE.RData                SingleCellExperiment with per-cell CellType
Channel order / names are taken from rowData(pancreasSCE)$clean_Target.

CellType in the toy object was recoded by cytomapper's 3_GenerateToyData.Rmd:
  celltype_A = beta, celltype_B = alpha, celltype_C = every other type;
  Pattern = (CellCat == "exocrine").
The original labels come from Damond et al. (clustering + expert annotation).

The three 100x100 tiles are placed side by side in one (C, 100, 340) image with
20-pixel zero gaps; cell ids are re-numbered 1..N (orig_image/orig_cell_id keep
the original ones).

Usage:
  python convert_imc_pancreas.py /work/.mirror/BodenmillerGroup+cytomapper/repo OUTDIR
Needs numpy, pandas, tifffile, scikit-image, git, and the pure-Python `rdata`
package (pip install rdata) to read the .RData file.
"""

import io
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from skimage.measure import regionprops_table

COMMIT = "a985bd6952ffa9639674c940c702ea4cd627592e"
IMAGES = ["E34", "G01", "J02"]
GAP = 20
RECODE = {"celltype_A": "beta", "celltype_B": "alpha", "celltype_C": "other"}


def git(gitdir, *args):
    return subprocess.run(["git", "--git-dir", str(gitdir), *args], check=True, capture_output=True).stdout


def load_sce(gitdir):
    import rdata

    raw = git(gitdir, "show", f"{COMMIT}:data/pancreasSCE.RData")
    with tempfile.NamedTemporaryFile(suffix=".RData") as f:
        f.write(raw)
        f.flush()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sce = rdata.conversion.convert(rdata.parser.parse_file(f.name))["pancreasSCE"]
    col = {str(k): np.asarray(v) for k, v in sce.colData.listData.items()}
    names = [str(x) for x in sce.rowRanges.elementMetadata.listData["clean_Target"]]
    return pd.DataFrame(col), names


def main(gitdir, outdir):
    gitdir, outdir = Path(gitdir), Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    coldata, channels = load_sce(gitdir)
    tiles, masks = [], []
    for n in IMAGES:
        tiles.append(tifffile.imread(io.BytesIO(git(gitdir, "show", f"{COMMIT}:inst/extdata/{n}_imc.tiff"))))
        masks.append(tifffile.imread(io.BytesIO(git(gitdir, "show", f"{COMMIT}:inst/extdata/{n}_mask.tiff"))))
    C, H, W = tiles[0].shape
    assert C == len(channels)
    img = np.zeros((C, H, len(IMAGES) * W + (len(IMAGES) - 1) * GAP), np.float32)
    lab = np.zeros(img.shape[1:], np.int32)
    rows, next_id = [], 1
    for k, (n, t, m) in enumerate(zip(IMAGES, tiles, masks)):
        x0 = k * (W + GAP)
        img[:, :, x0 : x0 + W] = t
        sub = coldata[coldata["ImageName"] == f"{n}_imc.tiff"].set_index("CellNb")
        props = regionprops_table(m.astype(np.int32), properties=("label", "centroid", "area"))
        for lbl, cy, cx, area in zip(props["label"], props["centroid-0"], props["centroid-1"], props["area"]):
            if lbl not in sub.index:
                continue  # mask object without single-cell record
            lab[:, x0 : x0 + W][m == lbl] = next_id
            r = sub.loc[lbl]
            ct = RECODE[str(r["CellType"])]
            rows.append(
                {
                    "id": next_id,
                    "y": round(float(cy), 2),
                    "x": round(float(cx) + x0, 2),
                    "cell_type": ct,
                    "is_beta": ct == "beta",
                    "is_alpha": ct == "alpha",
                    "is_exocrine": bool(r["Pattern"]),
                    "area": int(area),
                    "orig_image": n,
                    "orig_cell_id": int(lbl),
                }
            )
            next_id += 1
    df = pd.DataFrame(rows)
    tifffile.imwrite(
        outdir / "image.ome.tif",
        img,
        ome=True,
        photometric="minisblack",
        metadata={"axes": "CYX", "Channel": {"Name": channels}},
    )
    tifffile.imwrite(outdir / "nuclei.tif", lab, compression="zlib")
    (outdir / "channels.txt").write_text("\n".join(channels) + "\n")
    df.to_csv(outdir / "cells.csv", index=False)
    print("image", img.shape, "channels", channels, "cells", len(df))
    print(df.groupby(["orig_image", "cell_type"]).size().to_string())
    print(df["cell_type"].value_counts().to_string(), "exocrine:", int(df.is_exocrine.sum()))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
