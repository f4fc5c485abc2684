"""Files that survive a full disk, a read-only folder or a crash: whole-file replacement in one step, a journal
that is written before an answer counts and recovers from a cut-off last line, and clear errors for damaged files.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from napari_agile.errors import AgileInputError

#: the one file-open every write here goes through (the fault-injection tests replace it to fill the disk)
_open = open

#: where `recover_journal` keeps the damaged lines it takes out of a journal, beside it
DAMAGED_SUFFIX = ".damaged"


def _write_all(fh, data: bytes) -> None:
    """Write every byte of `data` to an unbuffered file (a raw write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[fh.write(view) :]


@contextmanager
def not_saved(what: str, path: Path, retry: str) -> Iterator[None]:
    """Turn a failed write (full disk, read-only folder) into one clear error: what was not saved, why, what to do."""
    try:
        yield
    except OSError as err:
        raise AgileInputError(
            f"{what} not saved: writing {path} failed ({err.strerror or err}). Free space on that disk or make the "
            f"folder writable, then {retry}; or save the session to another folder (Session.save, the widget's "
            "Save session…)."
        ) from None


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step (a synced temporary file beside it, then renamed): a failed or
    interrupted write keeps the previous file whole. The file follows the umask like any other."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with _open(tmp, "wb", buffering=0) as fh:
            _write_all(fh, data)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_records(path: Path, records: list[dict]) -> None:
    """Append one JSON line per record, synced to disk before returning. A write that fails part-way is cut
    back, so the journal holds whole records only; a journal left without its last newline gets one first."""
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    with _open(path, "ab+", buffering=0) as fh:
        start = fh.seek(0, os.SEEK_END)
        if start:
            fh.seek(start - 1)
            if fh.read(1) != b"\n":
                data = b"\n" + data
        try:
            _write_all(fh, data)
            os.fsync(fh.fileno())
        except OSError:
            try:
                fh.truncate(start)
            except OSError:
                pass  # the reader sets a cut-off tail aside
            raise


def _is_record(record: object) -> bool:
    """Whether a parsed journal line is an answer or undo record, or a cell type renamed or deleted."""
    if not (isinstance(record, dict) and isinstance(record.get("type"), str)):
        return False
    if "rename" in record or "delete" in record:
        return set(record) in ({"type", "rename"}, {"type", "delete"}) and (
            isinstance(record.get("rename"), str) or record.get("delete") is True
        )
    return (
        isinstance(record.get("id"), int)
        and not isinstance(record.get("id"), bool)
        and (record.get("answer") is None or isinstance(record.get("answer"), bool))
        and isinstance(record.get("undo", False), bool)
    )


def read_journal(path: Path) -> tuple[list[dict], list[bytes]]:
    """(every whole record, every damaged line) of a journal, in file order; blank lines are skipped."""
    records, damaged = [], []
    for line in path.read_bytes().splitlines(keepends=True) if path.exists() else []:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if _is_record(record):
            records.append(record)
        else:
            damaged.append(line if line.endswith(b"\n") else line + b"\n")
    return records, damaged


def recover_journal(path: Path) -> list[dict]:
    """The journal's whole records. Damaged lines (a record cut off by a full disk or a crash) are moved to a side
    file beside it and named in a warning; on a read-only folder they stay put and the warning says so."""
    records, damaged = read_journal(path)
    if not damaged:
        return records
    side = path.with_name(path.name + DAMAGED_SUFFIX)
    try:
        with _open(side, "ab", buffering=0) as fh:
            _write_all(fh, b"".join(damaged))
            os.fsync(fh.fileno())
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in records).encode())
        where = f"set aside in {side}"
    except OSError as err:
        where = f"left in place: the folder cannot be written ({err.strerror or err})"
    warnings.warn(
        f"{path}: {len(damaged)} damaged line(s) (an answer cut off by a full disk or a crash, never "
        f"acknowledged) {where}; the {len(records)} whole records are kept.",
        stacklevel=3,
    )
    return records


def read_json(path: Path, remedy: str) -> dict:
    """A JSON object from `path`; a clear error naming the file and `remedy` when it is missing, empty or damaged."""
    try:
        value = json.loads(path.read_bytes())
    except OSError as err:
        raise AgileInputError(f"Cannot read {path} ({err.strerror or err}): {remedy}") from None
    except (ValueError, RecursionError) as err:
        reason = "it is empty" if not path.stat().st_size else f"not valid JSON: {str(err)[:80] or 'too deep'}"
        raise AgileInputError(f"{path} is damaged ({reason}): {remedy}") from None
    if not isinstance(value, dict):
        raise AgileInputError(f"{path} is damaged (not a JSON object): {remedy}")
    return value
