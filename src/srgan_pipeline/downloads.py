"""Resumable, verified downloads and safe, atomic archive extraction.

Hand-written on purpose: ``urllib`` (Range requests, redirects), ``hashlib``, ``zipfile``,
``tarfile`` (with its ``filter="data"`` extraction filter) and ``tqdm`` cover everything,
and no maintained library combines resume + checksum + safe extraction with error messages
that tell the user how to supply the file by hand on an offline machine.

Files kept next to a download ``dest``:

* ``<dest>.part`` -- the download in progress; the next call resumes it (``Range``).
* ``<dest>.verified.json`` -- size, mtime_ns and digests of the verified ``dest``, so a
  re-run does not re-hash a multi-GB archive while the file is unchanged.
* ``<dest>.sha256`` -- only when no ``sha256`` is passed: the digest of the first download,
  which later downloads of the same ``dest`` must match (see :func:`download`). Recorded only
  once the file verified: with ``verify=check_archive``, a complete archive.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import lzma
import os
import re
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

USER_AGENT = "srgan-pipeline-downloader/1.0 (+python-urllib)"


class DownloadError(RuntimeError):
    """A download or extraction failed; the message says what, where, why and what to do."""


class ChecksumMismatchError(DownloadError):
    """The bytes do not match the expected (or the first recorded) digest."""


class UnsafeArchiveError(DownloadError):
    """An archive member would land outside the target directory (or is a device, ...)."""


class IncompleteArchiveError(DownloadError):
    """A file is not a complete zip or tar archive (cut short, damaged, or a web page)."""


TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")


def _error(url: str, dest: Path, why: str, cls: type[DownloadError] = DownloadError):
    return cls(f"Could not download {url}\n  to {dest}\n  reason: {why}\n"
               f"To provide the file by hand, download {url} yourself and place it at {dest}; "
               "it will be verified and used.")


def _hashers(md5: bool, path: Path | None = None, chunk_size: int = 1 << 20) -> dict:
    """New sha256 (and md5) hash objects, fed with the bytes of ``path`` if given."""
    hashers = {"sha256": hashlib.sha256(), **({"md5": hashlib.md5()} if md5 else {})}
    if path is not None:
        with open(path, "rb") as f:
            while chunk := f.read(chunk_size):
                for h in hashers.values():
                    h.update(chunk)
    return hashers


def _range_total(headers) -> int | None:
    """Total size from ``Content-Range: bytes a-b/TOTAL`` (or ``bytes */TOTAL``)."""
    m = re.search(r"/(\d+)\s*$", (headers or {}).get("Content-Range", ""))
    return int(m.group(1)) if m else None


def _fetch(url: str, dest: Path, part: Path, timeout: float, progress: bool, chunk_size: int,
           md5: bool) -> tuple[int | None, dict]:
    """Download (or resume) ``url`` into ``part``; return (server's total size, hashers)."""
    for _ in range(3):
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
        try:
            resp = urlopen(Request(url, headers=headers), timeout=timeout)
        except HTTPError as e:
            e.close()
            if e.code == 416 and offset:  # nothing left to fetch: complete, or a stale .part
                if _range_total(e.headers) == offset:
                    return offset, _hashers(md5, part, chunk_size)
                part.unlink()
                continue
            raise _error(url, dest, f"HTTP {e.code} {e.reason}") from e
        except ValueError as e:
            raise _error(url, dest, f"invalid URL ({e})") from e
        except (URLError, OSError) as e:
            why = getattr(e, "reason", None) or e
            raise _error(url, dest, f"network unreachable or offline ({why})") from e
        with resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length is not None else None
            if resp.status == 206:
                m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset:
                    part.unlink()  # the server answered another range: start over
                    continue
                total = _range_total(resp.headers) or (total and offset + total)
            else:  # 200: the server ignored Range (or there was no .part): start from zero
                offset = 0
            hashers = _hashers(md5, part if offset else None, chunk_size)
            with open(part, "ab" if offset else "wb") as f, tqdm(
                    total=total, initial=offset, desc=dest.name, unit="B", unit_scale=True,
                    unit_divisor=1024, disable=not progress) as bar:
                try:
                    while chunk := resp.read(chunk_size):
                        f.write(chunk)
                        for h in hashers.values():
                            h.update(chunk)
                        bar.update(len(chunk))
                except (OSError, http.client.HTTPException) as e:
                    raise _error(url, dest, f"download interrupted after {f.tell()} bytes "
                                 f"({e!r}); run again to resume from {part}") from e
            return total, hashers
    raise _error(url, dest, f"the server kept rejecting resume requests; delete {part}")


def _save_sidecar(dest: Path, digests: dict, verified: bool = False) -> dict:
    st = dest.stat()
    rec = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, **digests,
           **({"verified": True} if verified else {})}
    try:
        Path(f"{dest}.verified.json").write_text(json.dumps(rec))
    except OSError:  # read-only location: verify again next time
        pass
    return rec


def _sidecar(dest: Path) -> dict:
    """The ``.verified.json`` record of ``dest`` while its size and mtime match, else {}."""
    st = dest.stat()
    try:
        rec = json.loads(Path(f"{dest}.verified.json").read_text())
        if (rec["size"], rec["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
            return rec
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {}


def _digests_of(dest: Path, md5: bool, chunk_size: int) -> dict:
    """Digests of ``dest``, from the ``.verified.json`` sidecar while size and mtime match."""
    rec = _sidecar(dest)
    if "sha256" in rec and (not md5 or "md5" in rec):
        return rec
    hashers = _hashers(md5, dest, chunk_size)
    return _save_sidecar(dest, {k: h.hexdigest() for k, h in hashers.items()},
                         verified=rec.get("verified", False))


def download(url: str, dest: Path, *, size: int | None = None, sha256: str | None = None,
             md5: str | None = None, timeout: float = 60.0, progress: bool = True,
             chunk_size: int = 1 << 20,
             verify: Callable[[Path, str], None] | None = None) -> Path:
    """Download ``url`` to ``dest`` (resumable, verified, atomic) and return ``dest``.

    * An existing ``dest`` that passes the checks (``size``, ``sha256``/``md5``, else the
      recorded ``<dest>.sha256``) is returned without network access; hashing is skipped
      while ``<dest>.verified.json`` matches its size and mtime. An existing ``dest`` that
      fails them is never deleted: the error says so (delete or replace it yourself).
    * Otherwise the file goes to ``<dest>.part`` (resumed with ``Range: bytes=N-``), is
      checked against ``size`` (else the server's Content-Length) and the digests, then
      renamed to ``dest`` (``os.replace``). An interrupted download keeps the ``.part`` for
      the next call; a wrong size or checksum deletes it.
    * Without ``sha256``, the first successful download records its SHA-256 in
      ``<dest>.sha256``. A later download of the same ``dest`` (e.g. after the archive was
      deleted) that hashes differently raises ChecksumMismatchError: the remote file changed
      since the first download. To accept the new file, delete ``<dest>.sha256``.
    * Without a published ``sha256`` or ``md5``, ``verify(path, dest.name)`` (e.g.
      :func:`check_archive`) must pass, on the download before it is renamed to ``dest`` and
      its digest recorded (a failing download is deleted), and on a ``dest`` found on disk
      (placed by hand; never deleted) unless its sidecar says it verified already. A server
      that sends a login page, or a transfer cut short where the server gave no length, is
      then refused instead of recorded as the file to trust.
    """
    dest = Path(dest)
    part, record = Path(f"{dest}.part"), Path(f"{dest}.sha256")
    recorded = (record.read_text().split() or [""])[0] if record.exists() else ""
    expected = {"sha256": (sha256 or recorded or "").lower(), "md5": (md5 or "").lower()}

    def check(got: dict, existing: bool) -> None:
        for algo, want in expected.items():
            if not want or got[algo] == want:
                continue
            why = f"{algo} mismatch: expected {want}, got {got[algo]}"
            if existing:
                why = f"the file already at {dest} does not match ({why}); delete or replace it"
            elif algo == "sha256" and not sha256:
                why = (f"the remote file changed since the first download: {record} records "
                       f"sha256 {want}, this download has {got[algo]}; to accept the new "
                       f"file, delete {record} and run again")
            raise _error(url, dest, why, ChecksumMismatchError)

    verify = verify if not (sha256 or md5) else None  # a published digest proves the bytes
    if dest.exists():
        if size is not None and (got_size := dest.stat().st_size) != size:
            raise _error(url, dest, f"the file already at {dest} has {got_size} bytes, "
                         f"expected {size}; delete or replace it")
        if any(expected.values()):
            check(_digests_of(dest, bool(md5), chunk_size), existing=True)
        if verify is not None and not _sidecar(dest).get("verified"):
            try:
                verify(dest, dest.name)
            except IncompleteArchiveError as e:
                raise _error(url, dest, f"the file already at {dest} is not usable: {e}; "
                             "replace it with the complete file, or delete it to download "
                             "it again", IncompleteArchiveError) from e
            digests = _digests_of(dest, bool(md5), chunk_size)
            if not record.exists():  # trust the first copy that verified, as for a download
                record.write_text(f"{digests['sha256']}  {dest.name}\n")
            _save_sidecar(dest, {k: v for k, v in digests.items() if k in ("sha256", "md5")},
                          verified=True)
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    total, hashers = _fetch(url, dest, part, timeout, progress, chunk_size, bool(md5))
    got_size = part.stat().st_size
    if total is not None and got_size < total:
        raise _error(url, dest, f"download incomplete: got {got_size} of {total} bytes; "
                     f"run again to resume from {part}")
    want_size = size if size is not None else total
    if want_size is not None and got_size != want_size:
        part.unlink()
        raise _error(url, dest, f"size mismatch: expected {want_size} bytes, got {got_size} "
                     f"(server reported {total})")
    digests = {k: h.hexdigest() for k, h in hashers.items()}
    try:
        check(digests, existing=False)
    except ChecksumMismatchError:
        part.unlink()  # wrong bytes: resuming would only extend them
        raise
    if verify is not None:
        try:
            verify(part, dest.name)
        except IncompleteArchiveError as e:
            part.unlink()  # resuming would only extend it: start from zero next time
            raise _error(url, dest, f"the download ({got_size} bytes) is not usable: {e}. It "
                         "was deleted and nothing was recorded; run again to retry. If it "
                         f"fails the same way, open {url} in a browser: the server may want a "
                         "login or send an error page", IncompleteArchiveError) from e
    os.replace(part, dest)
    if not sha256 and not record.exists():
        record.write_text(f"{digests['sha256']}  {dest.name}\n")
    _save_sidecar(dest, digests, verified=verify is not None)
    return dest


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


def _unsafe(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"Refusing to extract {archive}: member {member!r} {why}; "
                              "nothing was kept. The archive is unsafe or not the "
                              "expected file.")


def extract(archive: Path, dest_dir: Path) -> Path:
    """Extract a .zip/.tar[.gz|.tgz|.bz2|.xz] ``archive`` into ``dest_dir`` atomically.

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
                    zf.extractall(tmp)
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                raise DownloadError(f"{corrupt} ({e})") from e
        else:
            try:
                with tarfile.open(archive) as tf:
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
