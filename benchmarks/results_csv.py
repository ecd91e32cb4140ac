"""Append-only CSV results shared by the benchmark scripts (one row per finished run)."""

from __future__ import annotations

import csv
from pathlib import Path


def append_row(path: Path, fields: list[str], row: dict) -> None:
    """Append `row` to `path` (header first when the file is new) and flush it to disk, so a
    session killed mid-benchmark loses only the run in progress."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists()
    with path.open("a", newline="") as out:
        writer = csv.DictWriter(out, fields)
        if new_file:
            writer.writeheader()
        writer.writerow(row)
