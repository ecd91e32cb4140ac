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
  which later downloads of the same ``dest`` must match (see :func:`download`).
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


def _save_sidecar(dest: Path, digests: dict) -> dict:
    st = dest.stat()
    rec = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, **digests}
    try:
        Path(f"{dest}.verified.json").write_text(json.dumps(rec))
    except OSError:  # read-only location: verify again next time
        pass
    return rec


def _digests_of(dest: Path, md5: bool, chunk_size: int) -> dict:
    """Digests of ``dest``, from the ``.verified.json`` sidecar while size and mtime match."""
    st = dest.stat()
    try:
        rec = json.loads(Path(f"{dest}.verified.json").read_text())
        if (rec["size"], rec["mtime_ns"]) == (st.st_size, st.st_mtime_ns) and (
                not md5 or "md5" in rec):
            return rec
    except (OSError, ValueError, KeyError, TypeError):
        pass
    hashers = _hashers(md5, dest, chunk_size)
    return _save_sidecar(dest, {k: h.hexdigest() for k, h in hashers.items()})


def download(url: str, dest: Path, *, size: int | None = None, sha256: str | None = None,
             md5: str | None = None, timeout: float = 60.0, progress: bool = True,
             chunk_size: int = 1 << 20) -> Path:
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

    if dest.exists():
        if size is not None and (got_size := dest.stat().st_size) != size:
            raise _error(url, dest, f"the file already at {dest} has {got_size} bytes, "
                         f"expected {size}; delete or replace it")
        if any(expected.values()):
            check(_digests_of(dest, bool(md5), chunk_size), existing=True)
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
    os.replace(part, dest)
    if not sha256 and not record.exists():
        record.write_text(f"{digests['sha256']}  {dest.name}\n")
    _save_sidecar(dest, digests)
    return dest


def _unsafe(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"Refusing to extract {archive}: member {member!r} {why}; "
                              "nothing was kept. The archive is unsafe or not the "
                              "expected file.")


def extract(archive: Path, dest_dir: Path) -> Path:
    """Extract a .zip/.tar[.gz|.tgz|.bz2|.xz] ``archive`` into ``dest_dir`` atomically.

    Members go to ``<dest_dir>.partial``, which is renamed to ``dest_dir`` with a
    ``.extracted`` marker (archive name and size); while the marker matches, a re-run
    returns at once. A ``dest_dir`` without a marker is never overwritten.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    marker = {"archive": archive.name, "size": archive.stat().st_size}
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
        if archive.suffix.lower() == ".zip" or zipfile.is_zipfile(archive):
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
