"""Image sources: where HR images come from, validated before anything is fetched.

A source is a named entry of ``data_prep.train_sources`` or ``data_prep.eval_sets``. Which kind
it is follows from the location it names, so one ``--params`` value can redirect it:

- ``path``: a folder of images the user already has (``local``); wins over ``url`` when both are
  set, because a copy on disk needs no download;
- ``url``: an archive, downloaded once into ``<raw_dir>/downloads/<source>/``, verified and
  extracted into ``<raw_dir>/extracted/<source>/``;
- ``builtin``: names of the colour photographs scikit-image ships inside its wheel (offline).

``kind`` may also be written explicitly; it must then agree with the location that is set.

Every folder a source writes is named after the source, never after its archive: two sources
whose URLs end in the same file name (``.../a/data.zip``, ``.../b/data.zip``) or stem
(``good.zip``, ``good.tar``) must not share a download or an extraction. So a source's name
must be a plain folder name, and names must differ (ignoring letter case, for macOS and
Windows disks) across train sources and evaluation sets together.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from srgan_pipeline.archives import DEFAULT_LIMITS, ArchiveLimits, check_archive, extract
from srgan_pipeline.downloads import download
from srgan_pipeline.names import BUILTIN_PHOTOS
from srgan_pipeline.params import ParameterError, Sources, clashing_source_names, validate_params

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Why a visible file of another suffix (GIF, HEIC, notes) is skipped: reported, never dropped.
NOT_AN_IMAGE = (f"not one of the image types read ({', '.join(IMAGE_SUFFIXES)}); convert it to "
                "one of them to use it")


class SourceError(ValueError):
    """A source is misconfigured or unusable; the message names the parameter or file."""


@dataclass(frozen=True)
class SourceSpec:
    """One validated source. ``param`` is its parameter path, used in every message."""

    name: str
    param: str
    kind: str
    path: str | None = None
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    images_in: str | None = None
    builtin: tuple[str, ...] = field(default_factory=tuple)


def parse_sources(raw: Mapping[str, Any] | None, param: str) -> list[SourceSpec]:
    """Validate every source under ``param`` (e.g. ``data_prep.train_sources``) at once.

    All errors are raised before any download starts, so a typo in the last source does not
    cost a multi-GB download of the first. The rules are params.SourceParams.
    """
    try:
        sources = validate_params(param, raw, schema=Sources)
    except ParameterError as error:
        raise SourceError(str(error)) from None
    specs = []
    for name, source in (sources or {}).items():
        if not NAME_PATTERN.fullmatch(str(name)):
            raise SourceError(
                f"{param}.{name}: source name {name!r} must be a plain folder name (letters, "
                "digits, '_', '-', '.'; starting with a letter or digit): it names the folders "
                "of its files"
            )
        if not source.enabled:
            logger.info("Source %s is disabled (%s.%s.enabled=false)", name, param, name)
            continue
        kind = source.kind or source.location_kind()
        if kind == "local" and source.url:
            logger.info("Source %s: using local folder %s instead of downloading %s", name,
                        source.path, source.url)
        specs.append(SourceSpec(
            name=str(name), param=f"{param}.{name}", kind=kind, path=source.path,
            url=source.url, size=source.size, sha256=source.sha256, md5=source.md5,
            images_in=source.images_in, builtin=source.builtin if kind == "builtin" else (),
        ))
    return specs


def check_distinct_names(groups: Mapping[str, Iterable[SourceSpec]]) -> None:
    """Refuse two sources of one name (ignoring case) across all groups, naming both.

    A source's name keys its download, extraction and image folders; a train source and an
    evaluation set of one name would share them.
    """
    problem = clashing_source_names(spec.param for specs in groups.values() for spec in specs)
    if problem:  # also refused when the parameters are validated (params.DataPrepParams)
        raise SourceError(problem)


def archive_path(spec: SourceSpec, raw_dir: Path) -> Path:
    """Where a ``url`` source's archive is downloaded to, or is to be placed by hand."""
    name = Path(unquote(urlsplit(spec.url).path)).name or "download"
    return Path(raw_dir) / "downloads" / spec.name / name


def acquire(spec: SourceSpec, raw_dir: Path, *, progress: bool = True,
            limits: ArchiveLimits = DEFAULT_LIMITS) -> Path:
    """Make the source's images available on disk and return the folder holding them.

    ``limits`` bound what a ``url`` source's archive may extract to.
    """
    if spec.kind == "local":
        folder = Path(spec.path).expanduser()
        if not folder.is_dir():
            raise SourceError(
                f"{spec.param}.path: folder '{spec.path}' does not exist "
                f"(resolved to {folder.resolve()}). Point it at a folder of images."
            )
    elif spec.kind == "url":
        archive = archive_path(spec, raw_dir)
        _check_same_url(spec, archive)
        legacy = Path(raw_dir) / "downloads" / archive.name  # before per-source folders
        if legacy.is_file() and not archive.exists():
            logger.warning("%s: %s is from the layout before per-source folders; if it is this "
                           "source's archive, move it to %s to skip the download", spec.param,
                           legacy, archive)
        download(spec.url, archive, size=spec.size, sha256=spec.sha256, md5=spec.md5,
                 progress=progress, verify=check_archive)
        _record_url(spec, archive)
        folder = extract(archive, Path(raw_dir) / "extracted" / spec.name, limits)
    else:
        folder = Path(raw_dir) / "builtin" / spec.name
        _copy_builtin_photos(spec.builtin, folder)
    if spec.images_in:
        folder = folder / spec.images_in
        if not folder.is_dir():
            raise SourceError(f"{spec.param}.images_in: '{spec.images_in}' is not a folder in "
                              f"{folder.parent}")
    return folder


def _url_record(archive: Path) -> Path:
    return archive.with_name(f"{archive.name}.url.json")


def _check_same_url(spec: SourceSpec, archive: Path) -> None:
    """Refuse an archive on disk that was downloaded from another URL than the source's now.

    Without this, changing ``url`` to another file of the same name (a new host, a new
    version) would silently keep using the old download.
    """
    if not archive.exists():
        return
    try:
        recorded = json.loads(_url_record(archive).read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # placed by hand: nothing says where it came from
    if recorded != spec.url:
        raise SourceError(
            f"{spec.param}.url is {spec.url}, but {archive} was downloaded from {recorded}. "
            f"Delete {archive.parent} to download the new URL, or set the old one back."
        )


def _record_url(spec: SourceSpec, archive: Path) -> None:
    record = _url_record(archive)
    if not record.exists():
        try:
            record.write_text(json.dumps({"url": spec.url}))
        except OSError:  # read-only location: the check is skipped next time
            pass


def _copy_builtin_photos(names: tuple[str, ...], folder: Path) -> None:
    from skimage import data as skimage_data  # scikit-image is only needed by this kind

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = Path(skimage_data.data_dir) / BUILTIN_PHOTOS[name]
        target = folder / source.name
        if target.exists() and target.stat().st_size == source.stat().st_size:
            continue
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)


def list_images(folder: Path, param: str) -> list[str]:
    """Image files below ``folder`` as sorted POSIX paths relative to it (see ``scan_folder``)."""
    return scan_folder(folder, param)[0]


def scan_folder(folder: Path, param: str) -> tuple[list[str], list[str]]:
    """``(images, others)`` below ``folder``: sorted POSIX paths relative to it.

    ``others`` are the visible files whose suffix is not one of ``IMAGE_SUFFIXES`` (a GIF, a
    HEIC photo, notes): callers report them as skipped, so every file a user put in the folder
    is either used or listed. Hidden files and folders are ignored: archives made on macOS
    carry ``__MACOSX/._name.png`` resource forks that look like images but are not.
    """
    images, others = [], []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith((".", "__MACOSX")) for part in relative.parts) or not path.is_file():
            continue
        (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(relative.as_posix())
    if not images:
        found = f"; it holds {len(others)} other file(s), e.g. {others[0]}" if others else ""
        raise SourceError(
            f"{param}: no images ({', '.join(IMAGE_SUFFIXES)}) found in folder {folder}{found}"
        )
    return sorted(images), sorted(others)

