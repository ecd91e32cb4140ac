"""One distinct output name per input file, when outputs change the suffix.

A folder may hold ``a.jpg`` and ``a.png``, or ``img.bmp``, ``img.tif`` and ``img.webp``: written
as PNG under their stems, all but one would be overwritten. Rule:

* a file keeps its stem (``photo.jpg`` -> ``photo.png``) when no other file claims that output;
* files whose stems collide keep their whole name (``a.jpg`` -> ``a.jpg.png``,
  ``a.png`` -> ``a.png.png``), so each output still names the file it came from.

Stems are compared ignoring letter case, because ``A.jpg`` and ``a.png`` can sit side by side
on any disk but ``A.png`` and ``a.png`` are one file on a case-insensitive one (macOS,
Windows). Whole names need no such care: they are distinct on the disk the inputs come from.
An output that would also be the name of an input folder (``a.jpg`` beside a folder
``a.png/``) falls back the same way; if even the whole name is taken, the file is skipped
with the reason.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import PurePosixPath

# Longest file name (one path component, in bytes) of Linux, macOS and Windows file systems.
NAME_MAX = 255


def distinct_output_names(
    names: list[str], suffix: str = ".png"
) -> tuple[dict[str, str], dict[str, str]]:
    """``({input: output key}, {input: why it has no output})`` for relative POSIX ``names``.

    The output file of a key is ``<key><suffix>``; no two of them are the same file, and none
    is the name of a folder that other outputs go into.
    """
    folders = {parent.as_posix() for name in names
               for parent in PurePosixPath(name).parents if parent.name}
    folded_folders = {folder.casefold() for folder in folders}
    keys = {name: str(PurePosixPath(name).with_suffix("")) for name in names}
    whole = set()  # inputs that fell back to their whole name
    while True:
        claims: dict[str, list[str]] = defaultdict(list)
        for name, key in keys.items():
            claims[(key + suffix).casefold()].append(name)
        crowded = {name for group in claims.values() if len(group) > 1 for name in group}
        crowded |= {name for name, key in keys.items()
                    if (key + suffix).casefold() in folded_folders}
        movable = crowded - whole
        if not movable:
            break
        for name in movable:
            keys[name] = name
        whole |= movable
    skipped = {}
    for name in sorted(whole):
        if keys[name] + suffix in folders:
            skipped[name] = (f"its output {keys[name] + suffix} would be a folder of other "
                             "outputs too; rename the file or the folder")
            del keys[name]
    return keys, skipped


def name_too_long(output: str) -> str | None:
    """Why the relative POSIX path ``output`` cannot be a file name, or None.

    A legal input name can make an illegal output: ``a.jpg`` that must keep its whole name
    becomes ``a.jpg.png``, 4 bytes longer; at 252 bytes or more it is over ``NAME_MAX``.
    """
    name = PurePosixPath(output).name
    if len(os.fsencode(name)) > NAME_MAX:
        return (f"its output name {name!r} would be {len(os.fsencode(name))} bytes, over the "
                f"{NAME_MAX} a file name may have; shorten the file's name")
    return None
