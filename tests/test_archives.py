"""Archives are checked before they are extracted: unsafe paths, corruption, size limits."""

from __future__ import annotations

import zipfile

import pytest
from conftest import PNG_MAGIC, png_files, tar_bytes, zip_bytes

from srgan_pipeline import archives
from srgan_pipeline.archives import extract
from srgan_pipeline.downloads import DownloadError, UnsafeArchiveError


@pytest.mark.parametrize(
    ("name", "data", "member"),
    [
        ("evil.zip", zip_bytes({"ok.png": b"x", "../evil.txt": b"pwned"}), "../evil.txt"),
        ("abs.zip", zip_bytes({"/tmp/evil.txt": b"pwned"}), "/tmp/evil.txt"),
        ("evil.tar", tar_bytes({"ok.png": b"x", "../evil.txt": b"pwned"}), "../evil.txt"),
        ("link.tar.gz", tar_bytes({"ok.png": b"x"}, "w:gz", links={"passwd": "/etc/passwd"}),
         "passwd"),
    ],
)
def test_unsafe_archives_are_rejected(tmp_path, name, data, member):
    archive = tmp_path / "archives" / name
    archive.parent.mkdir()
    archive.write_bytes(data)
    root = tmp_path / "raw"
    root.mkdir()
    out = root / "out"
    with pytest.raises(UnsafeArchiveError) as exc:
        extract(archive, out)
    assert str(archive) in str(exc.value) and member in str(exc.value)
    assert list(root.iterdir()) == []  # no out, no out.partial, no evil.txt
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize(("name", "data"), [("bad.zip", b"PK\x03\x04 not a zip"),
                                            ("bad.tar.gz", b"\x1f\x8b not gzip")])
def test_corrupt_archive(tmp_path, name, data):
    archive = tmp_path / name
    archive.write_bytes(data)
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match="corrupt") as exc:
        extract(archive, out)
    assert str(archive) in str(exc.value) and "delete it" in str(exc.value)
    assert not out.exists() and not out.with_name("out.partial").exists()


BOMB = tar_bytes({"HR/zeros.png": bytes(4_000_000)}, "w:gz")  # about 4 kB: 1000x


@pytest.mark.parametrize(
    ("name", "data", "limits", "message"),
    [
        ("bomb.tar.gz", BOMB, {}, "more than 100.0 times its"),
        ("bomb.zip", None, {}, "more than 100.0 times its"),  # deflated, built below
        ("many.tar", tar_bytes({f"{i}.png": b"" for i in range(11)}), {"max_members": 10},
         "more than 10 members"),
        ("big.tar", tar_bytes(png_files(3, 1000)), {"max_bytes": 2500},
         "more than 2500 bytes"),
    ],
)
def test_archives_over_a_limit_are_refused_before_extraction(tmp_path, name, data, limits,
                                                             message):
    archive = tmp_path / name
    if data is None:
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("HR/zeros.png", bytes(4_000_000))
    else:
        archive.write_bytes(data)
    setting = next(iter(limits), "max_ratio")
    with pytest.raises(archives.ArchiveLimitError, match=message) as exc:
        extract(archive, tmp_path / "out", archives.ArchiveLimits(**limits))
    assert f"data_prep.archive_limits.{setting}=" in str(exc.value)
    assert "nothing was extracted" in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no out/, no out.partial/


def test_archives_at_the_limits_extract(tmp_path):
    archive = tmp_path / "set.tar"
    archive.write_bytes(tar_bytes(png_files(3, 1000)))
    total = 3 * (len(PNG_MAGIC) + 1000)
    limits = archives.ArchiveLimits(max_members=3, max_bytes=total,
                                    max_ratio=total / archive.stat().st_size)
    out = extract(archive, tmp_path / "out", limits)
    assert sorted(p.name for p in (out / "HR").iterdir()) == ["0001.png", "0002.png", "0003.png"]


def test_a_limit_stops_the_scan_at_the_first_member_over_it(tmp_path):
    """A tar of 100,000 members took 83 s to extract: the scan must not read them all."""
    archive = tmp_path / "a.tar"
    archive.write_bytes(b"x")
    read = []
    members = ((read.append(i) or f"{i}", 0) for i in range(100_000))
    with pytest.raises(archives.ArchiveLimitError):
        archives._check_limits(archive, members, archives.ArchiveLimits(max_members=10))
    assert len(read) == 11


def test_extract_replaces_stale_partial_and_refuses_foreign_dir(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes(png_files(1)))
    stale = tmp_path / "out.partial"
    (stale / "junk").mkdir(parents=True)
    extract(archive, tmp_path / "out")
    assert not stale.exists() and (tmp_path / "out" / "HR" / "0001.png").exists()

    (tmp_path / "mine").mkdir()
    with pytest.raises(DownloadError, match="no valid .extracted marker"):
        extract(archive, tmp_path / "mine")
