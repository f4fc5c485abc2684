"""Tissue: a lazy (C, Y, X) multiplexed image with channel names; the unit every stage works on."""

from __future__ import annotations

import difflib
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_agile.errors import AgileInputError

#: The paper's 7-channel panel (rat brain, Maric et al. 2021).
PAPER_CHANNELS = ("DAPI", "Histones", "NeuN", "S100", "Olig2", "Iba1", "RECA1")
#: Name stems of stains of every nucleus across platforms (IF, CODEX, CyCIF, IMC's iridium DNA intercalator, MIBI's
#: dsDNA); `nuclear_flags` matches them case-insensitively at the start of a channel name.
NUCLEAR_STEMS = (
    "dapi",
    "hoechst",
    "histone",
    "h3",
    "dna",
    "dsdna",
    "draq",
    "syto",
    "ir191",
    "ir193",
    "ir191di",
    "ir193di",
    "191ir",
    "193ir",
    "iridium",
    "nuclear",
    "nucleus",
    "nucblue",
    "nucspot",
    "propidium",
    "sytox",
    "topro",
    "to-pro",
    "hh3",
)


#: a cycle, round or channel number written before a stain's name by cyclic imaging and microscope software
#: ('cyc001_DAPI', 'R0_DAPI', 'Cy1 DAPI', 'ch1-Hoechst')
CYCLE_PREFIX = re.compile(r"^(cyc|cycle|round|r|cy|ch|c)\d+[ _.:-]+")


def nuclear_flags(names: Sequence[str]) -> tuple[bool, ...]:
    """Which channels are nuclear stains, by name (e.g. 'DAPI', 'Hoechst 33342', 'Histone H3', 'DNA1', 'Ir191Di',
    'cyc001_DAPI')."""

    def nuclear(name: str) -> bool:
        key = CYCLE_PREFIX.sub("", name.strip().lower()).replace("_", " ")
        return any(
            key == stem or key.startswith(stem) and not key[len(stem) : len(stem) + 1].isalpha()
            for stem in NUCLEAR_STEMS
        ) or key.startswith(("histone", "hoechst", "dapi"))

    return tuple(nuclear(n) for n in names)


def find_channel(name: str, names: Sequence[str]) -> int | None:
    """Position of channel `name` in `names`: the exact name, else the one name equal to it ignoring case."""
    if name in names:
        return list(names).index(name)
    folded = [i for i, n in enumerate(names) if n.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def did_you_mean(name: str, names: Sequence[str]) -> str:
    """ " Did you mean 'X' (for 'name')?" for the channel name nearest `name` (ignoring case), or "" if none is."""
    lowered = {n.casefold(): n for n in names}
    close = difflib.get_close_matches(name.casefold(), list(lowered), n=1, cutoff=0.6)
    return f" Did you mean {lowered[close[0]]!r} (for {name!r})?" if close else ""


@dataclass
class Tissue:
    """A multiplexed image: `data` is (C, Y, X) numpy, memmap or dask; never loaded whole on purpose.

    A tissue read from compressed TIFFs keeps their files open to read lazily: `close()` (or a `with` block)
    releases them, and a later read opens them again; views from `select` and `rename` share the files of the
    tissue they came from."""

    data: Any
    channel_names: list[str]
    pixel_size: float | None = None  # micrometres per pixel, when known
    source: str | None = None  # where it was read from, for error messages
    metadata: dict = field(default_factory=dict)
    stores: list = field(default_factory=list, repr=False, compare=False)  # the open files `data` reads, if any

    def __post_init__(self) -> None:
        where = f" in {self.source}" if self.source else ""
        if getattr(self.data, "ndim", None) != 3:
            shape = getattr(self.data, "shape", None)
            raise AgileInputError(
                f"A tissue image must be (channels, rows, columns); got shape {shape}{where}. "
                "For a single-channel image add a channel axis; for an RGB image split it into channels."
            )
        blank = [i + 1 for i, n in enumerate(self.channel_names) if n is None or not str(n).strip()]
        if blank:
            raise AgileInputError(
                f"Channel(s) {blank}{where} have no name ({list(self.channel_names)}): give every channel a name "
                "(channel_names=[...], CLI --names), so markers can be chosen and nuclear stains recognised."
            )
        self.channel_names = [str(n) for n in self.channel_names]
        if len(self.channel_names) != self.data.shape[0]:
            layout = (
                " The image looks like (rows, columns, channels): pass array.transpose(2, 0, 1)."
                if len(self.channel_names) == self.data.shape[2]
                else ""
            )
            raise AgileInputError(
                f"{self.data.shape[0]} channels{where} but {len(self.channel_names)} channel names "
                f"({self.channel_names}): give one name per channel.{layout}"
            )
        dupes = sorted({n for n in self.channel_names if self.channel_names.count(n) > 1})
        if dupes:
            raise AgileInputError(
                f"Channel names must be unique{where}; repeated: {dupes}. Name every channel once: "
                "read_tissue(path, channel_names=[...]) (CLI: --names), or tissue.rename({...})."
            )
        if min(self.data.shape[1:]) < 1:
            raise AgileInputError(f"The image{where} is empty (shape {self.data.shape}).")
        kind = np.dtype(self.data.dtype).kind
        if kind == "b":
            raise AgileInputError(
                f"The image{where} is yes/no (boolean), a mask rather than marker intensities: open the intensity "
                "image; a nucleus mask goes in as labels (cells_from_labels, the widget's Nuclei choice)."
            )
        if kind not in "uif":
            raise AgileInputError(
                f"The image{where} holds {self.data.dtype} values, not pixel intensities: give "
                "integer or floating-point channels."
            )

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the section."""
        return tuple(int(s) for s in self.data.shape[1:])  # type: ignore[return-value]

    @property
    def n_channels(self) -> int:
        """How many channels (markers) the image holds."""
        return int(self.data.shape[0])

    def index(self, name: str) -> int:
        """Position of channel `name`; a clear error listing the channels there are."""
        found = find_channel(name, self.channel_names)
        if found is None:
            hint = did_you_mean(name, self.channel_names)
            raise AgileInputError(f"No channel named {name!r}; this tissue has {self.channel_names}.{hint}")
        return found

    def channel(self, name: str) -> Any:
        """One channel as a lazy (Y, X) array."""
        return self.data[self.index(name)]

    def crop(self, top: int, left: int, bottom: int, right: int) -> Tissue:
        """Rows `top`:`bottom` and columns `left`:`right` of the section (clipped to it), still read lazily: teach on
        a part of a section too large to hold every cell's patch, then type the whole with `type_sections`. Its
        metadata["region"] is that box in the whole section's pixels (a saved session keeps it: `Session.load`
        crops the whole section to it again)."""
        rows, cols = self.shape
        box = max(0, int(top)), max(0, int(left)), min(rows, int(bottom)), min(cols, int(right))
        if box[2] <= box[0] or box[3] <= box[1]:
            raise AgileInputError(
                f"The region rows {top}:{bottom}, columns {left}:{right} holds no pixel of the section "
                f"({rows} x {cols} px): give top < bottom and left < right inside it."
            )
        y0, x0 = self.metadata.get("region", (0, 0))[:2]  # a crop of a crop: in the whole section's pixels
        metadata = {**self.metadata, "region": [y0 + box[0], x0 + box[1], y0 + box[2], x0 + box[3]]}
        data = self.data[:, box[0] : box[2], box[1] : box[3]]
        return Tissue(data, list(self.channel_names), self.pixel_size, self.source, metadata, self.stores)

    def select(self, names: Sequence[str]) -> Tissue:
        """The channels `names` in that order (e.g. a model's input order), named so; matched ignoring case when
        not exact (find_channel); names all missing ones."""
        missing = [n for n in names if find_channel(n, self.channel_names) is None]
        if missing:
            raise AgileInputError(
                f"The model needs channels {missing}, which this tissue lacks "
                f"(it has {self.channel_names}).{''.join(did_you_mean(n, self.channel_names) for n in missing)} "
                "Rename the channels to match, map them with "
                "`channel_map`, or meta-train a model on this panel (`napari-agile meta-train`)."
            )
        idx = [find_channel(n, self.channel_names) for n in names]
        data = self.data[idx] if idx != list(range(self.n_channels)) else self.data
        return Tissue(data, list(names), self.pixel_size, self.source, dict(self.metadata), self.stores)

    def rename(self, mapping: dict[str, str]) -> Tissue:
        """A view with channels renamed by `mapping` (old -> new); other names kept."""
        names = [mapping.get(n, n) for n in self.channel_names]
        return Tissue(self.data, names, self.pixel_size, self.source, dict(self.metadata), self.stores)

    def close(self) -> None:
        """Close the files this tissue reads from; a no-op for in-memory data."""
        for store in self.stores:
            store.close()

    def __enter__(self) -> Tissue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """A (C, y1-y0, x1-x0) numpy block, clipped to the image; only this block is read."""
        block = self.data[:, max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)]
        try:
            return np.asarray(block)
        except FileNotFoundError as err:
            raise AgileInputError(
                f"{err.filename or self.source} is gone: the file was moved or deleted since it was opened. Open it "
                "again where it is now (read_tissue(new_path)), or put it back."
            ) from None
        except (OSError, ValueError, KeyError, RuntimeError, zlib.error) as err:  # a file's damaged strip, tile, chunk
            if "imagecodecs" in str(err):
                raise AgileInputError(
                    f"{self.source or 'The image'} is compressed with a codec this Python lacks ({str(err)[:120]}): "
                    "pip install imagecodecs, then open it again."
                ) from None
            raise AgileInputError(
                f"Cannot read rows {max(y0, 0)}-{min(y1, self.shape[0])}, columns {max(x0, 0)}-{min(x1, self.shape[1])}"
                f" of {self.source or 'the image'} ({str(err)[:160]}): the file is damaged or cut off there; copy it "
                "again from its source, or re-export it."
            ) from None
