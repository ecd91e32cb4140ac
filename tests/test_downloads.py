"""Tests for srgan_pipeline.downloads against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import PNG_MAGIC, closed_port_url, png_files, tar_bytes, zip_bytes

from srgan_pipeline import archives, downloads
from srgan_pipeline.archives import check_archive, extract
from srgan_pipeline.downloads import (
    ChecksumMismatchError,
    DownloadError,
    download,
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "."))


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("DIV2K_train_HR.zip", zip_bytes),
        ("benchmark.tar", tar_bytes),
        ("bench.tar.gz", lambda f: tar_bytes(f, "w:gz")),
        ("bench.tgz", lambda f: tar_bytes(f, "w:gz")),
        ("bench.tar.bz2", lambda f: tar_bytes(f, "w:bz2")),
        ("bench.tar.xz", lambda f: tar_bytes(f, "w:xz")),
    ],
)
def test_download_extract_then_rerun_is_offline(server, tmp_path, monkeypatch, name, build):
    files = png_files()
    data = build(files)
    server.files[f"/{name}"] = data
    dest = tmp_path / "01_raw" / "div2k" / name
    out = tmp_path / "01_raw" / "div2k" / "extracted"

    got = download(f"{server.url}/{name}", dest, size=len(data), sha256=_sha(data),
                   progress=False, chunk_size=1024)
    assert got == dest and dest.read_bytes() == data
    assert not Path(f"{dest}.part").exists()
    assert extract(dest, out) == out
    for member, content in files.items():
        assert (out / member).read_bytes() == content
    assert not out.with_name("extracted.partial").exists()
    assert len(server.requests) == 1

    # Re-run: no request, no re-hash (sidecar matches), no extraction.
    monkeypatch.setattr(downloads, "_hashers", lambda *a: pytest.fail("re-hashed"))
    monkeypatch.setattr(archives.zipfile, "ZipFile", lambda *a: pytest.fail("re-extracted"))
    monkeypatch.setattr(archives.tarfile, "open", lambda *a: pytest.fail("re-extracted"))
    assert download(f"{server.url}/{name}", dest, size=len(data), sha256=_sha(data),
                    progress=False) == dest
    assert extract(dest, out) == out
    assert len(server.requests) == 1


def test_existing_file_is_rehashed_when_it_changes(server, tmp_path):
    data = os.urandom(3000)
    server.files["/a.bin"] = data
    dest = tmp_path / "a.bin"
    download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False)
    dest.write_bytes(os.urandom(3000))  # same size, new mtime -> sidecar is stale
    os.utime(dest, ns=(1, 1))
    with pytest.raises(ChecksumMismatchError, match="already at"):
        download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False)
    assert dest.exists()  # a file the user placed is never deleted
    assert len(server.requests) == 1


def test_file_placed_by_hand_is_used_offline(tmp_path):
    data = zip_bytes(png_files(1))
    dest = tmp_path / "DIV2K.zip"
    dest.write_bytes(data)
    assert download(closed_port_url("DIV2K.zip"), dest, size=len(data), sha256=_sha(data),
                    md5=hashlib.md5(data).hexdigest(), progress=False) == dest


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    server.files["/a.zip"] = data = zip_bytes(png_files(1))
    dest = tmp_path / "a.zip"
    with pytest.raises(ChecksumMismatchError) as exc:
        download(f"{server.url}/a.zip", dest, sha256="0" * 64, progress=False)
    msg = str(exc.value)
    assert f"{server.url}/a.zip" in msg and "0" * 64 in msg and _sha(data) in msg
    assert not dest.exists() and _leftovers(dest) == []


def test_md5_mismatch(server, tmp_path):
    server.files["/a.bin"] = os.urandom(100)
    with pytest.raises(ChecksumMismatchError, match="md5 mismatch"):
        download(f"{server.url}/a.bin", tmp_path / "a.bin", md5="f" * 32, progress=False)


def test_size_mismatch(server, tmp_path):
    server.files["/a.bin"] = data = os.urandom(1000)
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="expected 999 bytes, got 1000"):
        download(f"{server.url}/a.bin", dest, size=len(data) - 1, progress=False)
    assert not dest.exists() and _leftovers(dest) == []


@pytest.mark.parametrize("ignore_range", [False, True])
def test_interrupted_download_resumes_or_restarts(server, tmp_path, ignore_range):
    server.files["/big.tar"] = data = os.urandom(50_000)
    dest = tmp_path / "big.tar"
    part = Path(f"{dest}.part")
    server.drop_after = 20_000
    with pytest.raises(DownloadError, match="run again to resume") as exc:
        download(f"{server.url}/big.tar", dest, sha256=_sha(data), timeout=5,
                 progress=False, chunk_size=4096)
    assert "place it at" in str(exc.value)
    n = part.stat().st_size
    assert 0 < n < len(data) and not dest.exists()

    server.drop_after, server.ignore_range = None, ignore_range
    download(f"{server.url}/big.tar", dest, sha256=_sha(data), progress=True, chunk_size=4096)
    assert dest.read_bytes() == data and not part.exists()
    assert server.requests[-1] == ("/big.tar", f"bytes={n}-")


def test_a_file_changed_between_cut_and_resume_is_fetched_anew_not_spliced(server, tmp_path):
    """No published digest: the first download's is recorded as the one to trust, so a
    splice (old bytes up to the cut, new ones after) must never be what is recorded."""
    server.files["/a.bin"] = os.urandom(50_000)
    dest = tmp_path / "a.bin"
    server.drop_after = 20_000
    with pytest.raises(DownloadError, match="run again to resume"):
        download(f"{server.url}/a.bin", dest, timeout=5, progress=False, chunk_size=4096)
    n = Path(f"{dest}.part").stat().st_size
    assert 0 < n < 50_000

    server.files["/a.bin"] = new = os.urandom(50_000)  # a new version, same size, same URL
    server.drop_after = None
    download(f"{server.url}/a.bin", dest, progress=False, chunk_size=4096)
    assert dest.read_bytes() == new
    assert Path(f"{dest}.sha256").read_text().split()[0] == _sha(new)
    assert server.requests[-1] == ("/a.bin", f"bytes={n}-")  # it asked to resume...
    assert server.if_ranges[-1] not in (None, server.if_ranges[0])  # ...of the old version
    assert _leftovers(dest) == ["a.bin.sha256", "a.bin.verified.json"]


def test_a_part_of_unknown_version_is_resumed_only_when_a_digest_checks_it(server, tmp_path):
    """A .part without the server's validator (placed by hand, or a server without ETag and
    Last-Modified): nothing could tell a splice, so without a published digest it starts over."""
    server.files["/a.bin"] = data = os.urandom(1000)
    dest = tmp_path / "a.bin"
    Path(f"{dest}.part").write_bytes(os.urandom(400))
    download(f"{server.url}/a.bin", dest, progress=False)
    assert dest.read_bytes() == data and server.requests == [("/a.bin", None)]
    dest.unlink()
    Path(f"{dest}.part").write_bytes(data[:400])
    download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False)
    assert dest.read_bytes() == data and server.requests[-1] == ("/a.bin", "bytes=400-")


def test_stalled_download_times_out_and_resumes(server, tmp_path):
    server.files["/a.bin"] = data = os.urandom(30_000)
    dest = tmp_path / "a.bin"
    server.stall_after = 10_000
    with pytest.raises(DownloadError, match="interrupted after 10000 bytes") as exc:
        download(f"{server.url}/a.bin", dest, timeout=0.3, progress=False, chunk_size=1000)
    assert isinstance(exc.value.__cause__, TimeoutError)
    server.stall_after = None
    download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False)
    assert dest.read_bytes() == data
    assert server.requests[-1] == ("/a.bin", "bytes=10000-")


def test_part_larger_than_file_restarts_after_416(server, tmp_path):
    server.files["/a.bin"] = data = os.urandom(1000)
    dest = tmp_path / "a.bin"
    Path(f"{dest}.part").write_bytes(os.urandom(1500))
    download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False)
    assert dest.read_bytes() == data
    assert [r for _, r in server.requests] == ["bytes=1500-", None]


def test_complete_part_is_used_after_416(server, tmp_path):
    server.files["/a.bin"] = data = os.urandom(1000)
    dest = tmp_path / "a.bin"
    Path(f"{dest}.part").write_bytes(data)
    download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False)
    assert dest.read_bytes() == data
    assert [r for _, r in server.requests] == ["bytes=1000-"]


def test_first_download_records_sha256_and_detects_remote_change(server, tmp_path):
    server.files["/a.tar"] = first = tar_bytes(png_files(1))
    dest = tmp_path / "a.tar"
    record = Path(f"{dest}.sha256")
    download(f"{server.url}/a.tar", dest, progress=False)
    assert record.read_text().split() == [_sha(first), "a.tar"]

    server.files["/a.tar"] = second = tar_bytes(png_files(2))
    dest.unlink()
    with pytest.raises(ChecksumMismatchError, match="changed since the first download") as exc:
        download(f"{server.url}/a.tar", dest, progress=False)
    assert str(record) in str(exc.value) and _sha(second) in str(exc.value)
    assert not dest.exists() and not Path(f"{dest}.part").exists()

    record.unlink()  # accept the new remote file
    download(f"{server.url}/a.tar", dest, progress=False)
    assert dest.read_bytes() == second and record.read_text().split()[0] == _sha(second)


def test_unreachable_server(tmp_path):
    url, dest = closed_port_url("DIV2K.zip"), tmp_path / "raw" / "DIV2K.zip"
    with pytest.raises(DownloadError) as exc:
        download(url, dest, timeout=2, progress=False)
    msg = str(exc.value)
    assert url in msg and str(dest) in msg and "place it at" in msg and "offline" in msg
    assert exc.value.__cause__ is not None
    assert not dest.exists()


def test_http_404(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404") as exc:
        download(f"{server.url}/missing.zip", tmp_path / "missing.zip", progress=False)
    assert f"{server.url}/missing.zip" in str(exc.value)


# --- Trust on first download: only a complete archive is accepted and recorded ---------------

HTML = b"<!DOCTYPE html><html><body>Please log in to download</body></html>\n"


def _tar_cut_at_member(n_members: int, keep: int) -> bytes:
    """A tar of ``n_members`` files cut right after member ``keep``: what tarfile reads happily."""
    data = tar_bytes(png_files(n_members, size=1000))
    member = 512 + 1024  # header + 1004 data bytes padded to two blocks
    return data[: keep * member]


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("a.zip", HTML, "not a zip archive"),
        ("a.tar", HTML, "not a tar archive"),
        ("a.tar.gz", HTML, "not a tar archive"),
        ("a.zip", zip_bytes(png_files(4))[:-30], "not a zip archive"),  # cut, no central directory
        ("a.tar", tar_bytes(png_files(4))[:3000], "truncated"),  # cut inside a member
        ("a.tar", _tar_cut_at_member(8, keep=3), "ends before"),  # cut at a member boundary
        ("a.tar.gz", tar_bytes(png_files(4), "w:gz")[:-100], "truncated"),
        ("data", HTML, "neither a zip nor a tar"),
    ],
    ids=["html-zip", "html-tar", "html-tgz", "zip-cut", "tar-cut-in-member",
         "tar-cut-at-member", "tgz-cut", "html-no-suffix"],
)
def test_a_download_that_is_not_a_complete_archive_is_deleted_not_recorded(
        server, tmp_path, name, data, why):
    server.files[f"/{name}"] = data
    dest = tmp_path / name
    with pytest.raises(DownloadError, match=why) as exc:
        download(f"{server.url}/{name}", dest, progress=False, verify=check_archive)
    message = str(exc.value)
    assert "deleted" in message and "run again" in message and "place it at" in message
    assert not dest.exists() and _leftovers(dest) == []  # no .part, no .sha256, no sidecar

    # The advice works: once the server sends the real archive, the next run takes it.
    server.files[f"/{name}"] = good = (zip_bytes if name.endswith("zip") else tar_bytes)(
        png_files(2))
    download(f"{server.url}/{name}", dest, progress=False, verify=check_archive)
    assert dest.read_bytes() == good
    assert Path(f"{dest}.sha256").read_text().split()[0] == _sha(good)


@pytest.mark.parametrize(("name", "build"), [("a.zip", zip_bytes), ("a.tar", tar_bytes)])
def test_a_download_cut_without_content_length_is_refused(server, tmp_path, name, build):
    server.files[f"/{name}"] = data = build(png_files(4))
    server.send_length, server.drop_after = False, len(data) // 2
    dest = tmp_path / name
    with pytest.raises(DownloadError, match="deleted"):
        download(f"{server.url}/{name}", dest, progress=False, verify=check_archive)
    assert not dest.exists() and _leftovers(dest) == []
    server.drop_after = None  # the whole file, still without a length: accepted
    download(f"{server.url}/{name}", dest, progress=False, verify=check_archive)
    assert dest.read_bytes() == data


@pytest.mark.parametrize(
    ("name", "build"),
    [("a.zip", zip_bytes), ("a.tar", tar_bytes), ("a.tgz", lambda f: tar_bytes(f, "w:gz")),
     ("a.tar.bz2", lambda f: tar_bytes(f, "w:bz2")), ("a.tar.xz", lambda f: tar_bytes(f, "w:xz"))],
)
def test_complete_archives_without_a_checksum_are_accepted(server, tmp_path, name, build):
    server.files[f"/{name}"] = data = build(png_files(3))
    dest = tmp_path / name
    download(f"{server.url}/{name}", dest, progress=False, verify=check_archive)
    assert dest.read_bytes() == data


def test_a_zip_member_with_a_bad_crc_is_refused(server, tmp_path):
    data = bytearray(zip_bytes({"HR/a.png": PNG_MAGIC + b"x" * 3000}))
    data[100] ^= 0xFF  # inside the stored member's data: the central directory is intact
    server.files["/a.zip"] = bytes(data)
    with pytest.raises(DownloadError, match="HR/a.png"):
        download(f"{server.url}/a.zip", tmp_path / "a.zip", progress=False,
                 verify=check_archive)
    assert not (tmp_path / "a.zip").exists()


@pytest.mark.parametrize("data", [HTML, _tar_cut_at_member(8, keep=3)], ids=["html", "tar-cut"])
def test_a_file_placed_by_hand_is_verified_too_and_kept(tmp_path, data):
    dest = tmp_path / "benchmark.tar"
    dest.write_bytes(data)
    with pytest.raises(DownloadError) as exc:
        download(closed_port_url("DIV2K.zip"), dest, progress=False, verify=check_archive)
    assert str(dest) in str(exc.value) and "replace it" in str(exc.value)
    assert dest.read_bytes() == data  # the user's file is never deleted
    assert not Path(f"{dest}.sha256").exists()

    dest.write_bytes(good := tar_bytes(png_files(2)))
    assert download(closed_port_url("DIV2K.zip"), dest, progress=False,
                    verify=check_archive) == dest
    assert Path(f"{dest}.sha256").read_text().split()[0] == _sha(good)
