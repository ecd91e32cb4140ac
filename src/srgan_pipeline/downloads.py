"""Resumable, verified downloads (archives.py checks and extracts what they bring).

Hand-written on purpose: ``urllib`` (Range requests, redirects), ``hashlib``, ``zipfile``,
and ``tqdm`` cover everything, and no maintained library combines resume + checksum +
archive verification (archives.py) with error messages
that tell the user how to supply the file by hand on an offline machine.

Files kept next to a download ``dest``:

* ``<dest>.part`` -- the download in progress; the next call resumes it (``Range``).
* ``<dest>.part.validator`` -- the server's ETag or Last-Modified for that ``.part``, sent
  back as ``If-Range`` on resume so that a file changed meanwhile is fetched anew.
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
import os
import re
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
           md5: bool, checked: bool) -> tuple[int | None, dict]:
    """Download (or resume) ``url`` into ``part``; return (server's total size, hashers).

    ``checked``: a published digest will check the result (see ``_resume_headers``).
    """
    for _ in range(3):
        headers = {"User-Agent": USER_AGENT, **_resume_headers(part, checked)}
        offset = part.stat().st_size if "Range" in headers else 0
        try:
            resp = urlopen(Request(url, headers=headers), timeout=timeout)
        except HTTPError as e:
            e.close()
            if e.code == 416 and offset:  # nothing left to fetch: complete, or a stale .part
                if _range_total(e.headers) == offset:
                    return offset, _hashers(md5, part, chunk_size)
                _discard(part)
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
                    _discard(part)  # the server answered another range: start over
                    continue
                total = _range_total(resp.headers) or (total and offset + total)
            else:  # 200: the server ignored Range, the file changed (If-Range), or no .part
                offset = 0
                _remember_validator(part, resp.headers)
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


def _validator_path(part: Path) -> Path:
    return Path(f"{part}.validator")


def _resume_headers(part: Path, checked: bool) -> dict[str, str]:
    """``Range`` (and ``If-Range``) to resume ``part``, or {} to start from zero.

    Without ``If-Range`` a file that changed on the server between the cut and the resume was
    spliced, half old, half new, and its digest recorded as the one to trust. With it the
    server sends the rest only if the file is still the version the ``.part`` began with,
    else the whole new file (200). A ``.part`` without a recorded validator (the server sent
    none, or it was placed by hand) is resumed only when a published digest will check the
    result; otherwise nothing could tell a splice, so it starts over.
    """
    offset = part.stat().st_size if part.exists() else 0
    if not offset:
        return {}
    try:
        validator = _validator_path(part).read_text().strip()
    except OSError:
        validator = ""
    if validator:
        return {"Range": f"bytes={offset}-", "If-Range": validator}
    return {"Range": f"bytes={offset}-"} if checked else {}


def _discard(part: Path) -> None:
    """Delete a ``.part`` and the validator of the version it held."""
    part.unlink(missing_ok=True)
    _validator_path(part).unlink(missing_ok=True)


def _remember_validator(part: Path, headers) -> None:
    """Record what identifies the version being downloaded: a strong ETag, else Last-Modified
    (If-Range accepts no weak ETag). Nothing recorded when the server sends neither."""
    etag = headers.get("ETag") or ""
    validator = etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")
    record = _validator_path(part)
    record.unlink(missing_ok=True)
    if validator:
        record.write_text(validator)


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
      :func:`archives.check_archive`) must pass, on the download before it is renamed to
      ``dest`` and its digest recorded (a failing download is deleted), and on a ``dest``
      found on disk (placed by hand; never deleted) unless its sidecar says it verified
      already. A server
      that sends a login page, or a transfer cut short where the server gave no length, is
      then refused instead of recorded as the file to trust.
    """
    target = _Target(url, Path(dest), sha256, md5, chunk_size)
    verify = verify if not (sha256 or md5) else None  # a published digest proves the bytes
    if target.dest.exists():
        _accept_existing(target, size, verify)
        return target.dest
    target.dest.parent.mkdir(parents=True, exist_ok=True)
    total, hashers = _fetch(url, target.dest, target.part, timeout, progress, chunk_size,
                            bool(md5), checked=bool(sha256 or md5))
    got_size = target.part.stat().st_size
    if total is not None and got_size < total:
        raise target.error(f"download incomplete: got {got_size} of {total} bytes; "
                           f"run again to resume from {target.part}")
    want_size = size if size is not None else total
    if want_size is not None and got_size != want_size:
        _discard(target.part)
        raise target.error(f"size mismatch: expected {want_size} bytes, got {got_size} "
                           f"(server reported {total})")
    digests = {k: h.hexdigest() for k, h in hashers.items()}
    try:
        target.check(digests, existing=False)
    except ChecksumMismatchError:
        _discard(target.part)  # wrong bytes: resuming would only extend them
        raise
    if verify is not None:
        _verify_download(target, verify, got_size)
    os.replace(target.part, target.dest)
    _validator_path(target.part).unlink(missing_ok=True)  # its .part is gone: resume nothing
    if not sha256:
        target.record_first_digest(digests)
    _save_sidecar(target.dest, digests, verified=verify is not None)
    return target.dest


class _Target:
    """Where a download goes and the digests it must have (published, or recorded before)."""

    def __init__(self, url: str, dest: Path, sha256: str | None, md5: str | None,
                 chunk_size: int):
        self.url, self.dest, self.md5, self.chunk_size = url, dest, md5, chunk_size
        self.part, self.record = Path(f"{dest}.part"), Path(f"{dest}.sha256")
        self.published_sha256 = bool(sha256)
        recorded = (self.record.read_text().split() or [""])[0] if self.record.exists() else ""
        self.expected = {"sha256": (sha256 or recorded or "").lower(),
                         "md5": (md5 or "").lower()}

    def error(self, why: str, cls: type[DownloadError] = DownloadError) -> DownloadError:
        return _error(self.url, self.dest, why, cls)

    def check(self, got: dict, existing: bool) -> None:
        for algo, want in self.expected.items():
            if not want or got[algo] == want:
                continue
            why = f"{algo} mismatch: expected {want}, got {got[algo]}"
            if existing:
                why = f"the file already at {self.dest} does not match ({why}); delete or " \
                      "replace it"
            elif algo == "sha256" and not self.published_sha256:
                why = (f"the remote file changed since the first download: {self.record} "
                       f"records sha256 {want}, this download has {got[algo]}; to accept the "
                       f"new file, delete {self.record} and run again")
            raise self.error(why, ChecksumMismatchError)

    def digests(self) -> dict:
        return _digests_of(self.dest, bool(self.md5), self.chunk_size)

    def record_first_digest(self, digests: dict) -> None:
        """Trust on first use: the first copy that passed is the one later copies must match."""
        if not self.record.exists():
            self.record.write_text(f"{digests['sha256']}  {self.dest.name}\n")


def _accept_existing(target: _Target, size: int | None,
                     verify: Callable[[Path, str], None] | None) -> None:
    """Check a file already at ``dest``; it is never deleted (it may have been placed by hand)."""
    dest = target.dest
    if size is not None and (got_size := dest.stat().st_size) != size:
        raise target.error(f"the file already at {dest} has {got_size} bytes, expected {size}; "
                           "delete or replace it")
    if any(target.expected.values()):
        target.check(target.digests(), existing=True)
    if verify is None or _sidecar(dest).get("verified"):
        return
    try:
        verify(dest, dest.name)
    except IncompleteArchiveError as e:
        raise target.error(f"the file already at {dest} is not usable: {e}; replace it with "
                           "the complete file, or delete it to download it again",
                           IncompleteArchiveError) from e
    digests = target.digests()
    target.record_first_digest(digests)
    _save_sidecar(dest, {k: v for k, v in digests.items() if k in ("sha256", "md5")},
                  verified=True)


def _verify_download(target: _Target, verify: Callable[[Path, str], None],
                     got_size: int) -> None:
    try:
        verify(target.part, target.dest.name)
    except IncompleteArchiveError as e:
        _discard(target.part)  # resuming would only extend it: start from zero next time
        raise target.error(f"the download ({got_size} bytes) is not usable: {e}. It was "
                           "deleted and nothing was recorded; run again to retry. If it fails "
                           f"the same way, open {target.url} in a browser: the server may want "
                           "a login or send an error page", IncompleteArchiveError) from e
