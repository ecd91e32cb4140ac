"""Archives: is a download a complete zip or tar, and safe, atomic extraction of one.

Hand-written on purpose around ``zipfile`` and ``tarfile`` (with its ``filter="data"``
extraction filter): see :func:`_check_tar` for what tarfile does not check by itself.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from srgan_pipeline.downloads import DownloadError, IncompleteArchiveError, UnsafeArchiveError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")


def archive_kind(path: Path, name: str | None = None) -> str | None:
    """``"zip"``, ``"tar"`` (any compression) or None, from ``name``'s suffix, else the bytes."""
    lower = (name or Path(path).name).lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        return "tar" if tarfile.is_tarfile(path) else None
    except (OSError, EOFError, zlib.error, lzma.LZMAError):
        return None


def check_archive(path: Path, name: str | None = None) -> None:
    """Raise IncompleteArchiveError unless ``path`` is a complete zip or tar archive.

    The kind follows from ``name`` (default: the file's own name; a ``.part`` download passes
    its final name), else from the bytes. A zip's every member is read and CRC-checked
    (``ZipFile.testzip``); a tar is read to its end, through the decompressor, whose own
    check (gzip CRC, xz/bz2 stream end) then runs.
    """
    path = Path(path)
    kind = archive_kind(path, name)
    if kind is None:
        raise IncompleteArchiveError(f"it is neither a zip nor a tar archive{_looks_like(path)}")
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except zipfile.BadZipFile as e:
            raise IncompleteArchiveError(
                f"it is not a zip archive ({e}): cut short, or another kind of "
                f"file{_looks_like(path)}") from e
        except (zlib.error, EOFError, NotImplementedError, OSError) as e:
            raise IncompleteArchiveError(f"its members cannot be read ({e})") from e
        if bad is not None:
            raise IncompleteArchiveError(f"member {bad!r} fails its CRC check: it is damaged")
        return
    _check_tar(path)


def _check_tar(path: Path) -> None:
    """A tar read to its end-of-archive marker.

    Hand-written because ``tarfile`` stops quietly at the end of the file: a tar cut exactly
    at a member boundary (or inside a member, for an uncompressed one) lists as a shorter,
    valid-looking archive. POSIX ends every archive with two 512-byte zero blocks, which
    every tar writer (GNU, bsdtar, Python) emits: so they must follow the last member.
    """
    members = 0
    try:
        with tarfile.open(path) as tf:
            for _ in tf:  # reads each header, checksum-checked, seeking past the data
                members += 1
            end = tf.offset  # the block after the last member: the end marker, if any
            tf.fileobj.seek(end)
            marker = tf.fileobj.read(2 * tarfile.BLOCKSIZE)
            while tf.fileobj.read(1 << 20):  # the rest, so a compressed stream checks its end
                pass
    except tarfile.ReadError as e:
        if members:
            raise IncompleteArchiveError(f"it is truncated or damaged after {members} "
                                         f"member(s) ({e})") from e
        # tarfile's message lists every decompressor it tried: chained, not repeated
        raise IncompleteArchiveError(f"it is not a tar archive{_looks_like(path)}") from e
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as e:
        raise IncompleteArchiveError(f"it is truncated or damaged after {members} member(s) "
                                     f"({type(e).__name__}: {e})") from e
    if marker != bytes(2 * tarfile.BLOCKSIZE):
        raise IncompleteArchiveError(f"it ends before the tar end-of-archive marker, after "
                                     f"{members} member(s): the file was cut short")


def _looks_like(path: Path) -> str:
    """A hint when a file starts like a web page (a login, error or rate-limit page)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if re.search(rb"<(!doctype|html|head|body|\?xml)", head, re.IGNORECASE):
        return f" (it starts like a web page: {head[:60]!r}...)"
    return ""


@dataclass(frozen=True)
class ArchiveLimits:
    """What one archive may extract to (``data_prep.archive_limits``), checked before a byte
    is written: a 457 kB zip once extracted to 401 MB, and a tar of 100,000 empty members
    took 83 s. Sizes are the members' declared ones, which bound what is written: zipfile
    stops at a member's declared size, and a tar member's data is exactly its size."""

    max_members: int = 50_000
    max_bytes: int = 100 * 2**30
    max_ratio: float = 100.0  # extracted bytes per byte of archive; images are about 1
    param: str = "data_prep.archive_limits"


DEFAULT_LIMITS = ArchiveLimits()


class ArchiveLimitError(UnsafeArchiveError):
    """An archive would extract to more members, bytes or bytes per archive byte than allowed."""


def _check_limits(archive: Path, members: Iterable[tuple[str, int]],
                  limits: ArchiveLimits) -> None:
    """Raise ArchiveLimitError at the first member over a limit: the scan of a bomb stops early."""
    size, count, total = archive.stat().st_size, 0, 0
    for _, member_size in members:
        count, total = count + 1, total + member_size
        if count > limits.max_members:
            over = ("max_members", limits.max_members, f"has more than {limits.max_members} "
                    "members")
        elif total > limits.max_bytes:
            over = ("max_bytes", limits.max_bytes, f"would extract to more than "
                    f"{limits.max_bytes} bytes")
        elif total > limits.max_ratio * size:
            over = ("max_ratio", limits.max_ratio, f"would extract to more than "
                    f"{limits.max_ratio} times its {size} bytes")
        else:
            continue
        key, value, why = over
        raise ArchiveLimitError(
            f"Refusing to extract {archive}: it {why} ({limits.param}.{key}={value}); "
            "nothing was extracted. If it is the archive you expect, raise the limit, e.g. "
            f"--params={limits.param}.{key}=<larger>")


def _unsafe(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"Refusing to extract {archive}: member {member!r} {why}; "
                              "nothing was kept. The archive is unsafe or not the "
                              "expected file.")


def extract(archive: Path, dest_dir: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> Path:
    """Extract a .zip/.tar[.gz|.tgz|.bz2|.xz] ``archive`` into ``dest_dir`` atomically.

    An archive over ``limits`` is refused before anything is extracted.

    Members go to ``<dest_dir>.partial``, which is renamed to ``dest_dir`` with a
    ``.extracted`` marker (archive name, size and mtime); while the marker matches, a re-run
    returns at once. A ``dest_dir`` without a marker is never overwritten.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    st = archive.stat()
    # mtime too: a new download of the same name and size (another version) is extracted anew
    marker = {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if dest_dir.exists():
        try:
            if json.loads((dest_dir / ".extracted").read_text()) == marker:
                return dest_dir
        except (OSError, ValueError) as e:
            raise DownloadError(f"{dest_dir} exists but was not extracted from {archive} (no "
                                f"valid .extracted marker); delete it to extract again") from e
    tmp = dest_dir.with_name(dest_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    corrupt = f"{archive} is corrupt or truncated; delete it so it is downloaded again"
    try:
        if archive_kind(archive) == "zip":
            try:
                with zipfile.ZipFile(archive) as zf:
                    root = tmp.resolve()
                    for name in zf.namelist():
                        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
                            raise _unsafe(archive, name, "has an absolute path")
                        if not (root / name).resolve().is_relative_to(root):
                            raise _unsafe(archive, name, "would be written outside the target")
                    _check_limits(archive, ((i.filename, i.file_size) for i in zf.infolist()),
                                  limits)
                    zf.extractall(tmp)
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                raise DownloadError(f"{corrupt} ({e})") from e
        else:
            try:
                with tarfile.open(archive) as tf:
                    _check_limits(archive, ((m.name, m.size) for m in tf), limits)
                    tf.extractall(tmp, filter="data")
            except tarfile.FilterError as e:
                raise _unsafe(archive, e.tarinfo.name, f"is unsafe ({e})") from e
            except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as e:
                raise DownloadError(f"{corrupt} ({e})") from e
        (tmp / ".extracted").write_text(json.dumps(marker))
        if dest_dir.exists():  # extracted from another version of the archive: replace it
            shutil.rmtree(dest_dir)
        os.replace(tmp, dest_dir)
    except OSError as e:
        raise DownloadError(f"Could not extract {archive} into {dest_dir}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir
