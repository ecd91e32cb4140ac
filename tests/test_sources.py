import hashlib

import pytest
from conftest import write_image, zip_bytes

from srgan_pipeline.downloads import ChecksumMismatchError, DownloadError
from srgan_pipeline.sources import SourceError, acquire, list_images, parse_sources


def parse_one(settings, group="data_prep.train_sources", name="s"):
    specs = parse_sources({name: settings}, group)
    assert len(specs) == 1
    return specs[0]


def test_kind_follows_from_the_location_and_path_wins_over_url():
    assert parse_one({"path": "/x"}).kind == "local"
    assert parse_one({"url": "http://h/a.zip"}).kind == "url"
    assert parse_one({"builtin": ["astronaut"]}).kind == "builtin"
    assert parse_one({"url": "http://h/a.zip", "path": "/x"}).kind == "local"


def test_source_without_location_names_the_parameters_to_set():
    with pytest.raises(SourceError) as error:
        parse_sources({"faces": {"path": None, "url": None}}, "data_prep.train_sources")
    message = str(error.value)
    assert "data_prep.train_sources.faces.path" in message
    assert "data_prep.train_sources.faces.url" in message
    assert "enabled=false" in message


def test_disabled_source_is_left_out():
    assert parse_sources({"faces": {"enabled": False}}, "data_prep.train_sources") == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kind": "ftp", "url": "x"}, "kind: must be 'url', 'local' or 'builtin', got 'ftp'"),
        ({"kind": "local", "url": "http://h/a.zip"}, "kind is 'local' but .*s.path is not set"),
        ({"pth": "/x"}, r"s\.pth: unknown key; valid keys: kind, enabled, path, url, "),
        ({"url": "http://h/a.zip", "sha256": "abc"}, "sha256: must be 64 hex digits"),
        ({"url": "http://h/a.zip", "size": -3}, "size: must be >= 1, got -3"),
        ({"builtin": ["lena"]}, r"unknown photograph\(s\) \['lena'\]"),
        ({"path": "/x", "enabled": "no"}, "enabled: must be true or false, got 'no'"),
        ("just a string", "must be a mapping"),
    ],
)
def test_bad_settings_are_refused_naming_the_parameter(settings, message):
    with pytest.raises(SourceError, match=message) as error:
        parse_sources({"s": settings}, "data_prep.eval_sets")
    assert "data_prep.eval_sets.s" in str(error.value)


def test_local_source_lists_images_recursively_and_ignores_hidden_files(tmp_path):
    write_image(tmp_path / "b.png")
    write_image(tmp_path / "sub" / "a.jpg")
    write_image(tmp_path / "__MACOSX" / "._b.png")
    write_image(tmp_path / ".cache" / "c.png")
    (tmp_path / "notes.txt").write_text("not an image")
    folder = acquire(parse_one({"path": str(tmp_path)}), tmp_path / "raw")
    assert folder == tmp_path
    assert list_images(folder, "p") == ["b.png", "sub/a.jpg"]


def test_missing_local_folder_and_empty_folder_are_clear_errors(tmp_path):
    missing = "data_prep.train_sources.s.path: folder .* does not exist"
    with pytest.raises(SourceError, match=missing):
        acquire(parse_one({"path": str(tmp_path / "nope")}), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images .* found in folder"):
        list_images(tmp_path / "empty", "data_prep.train_sources.s")


def test_builtin_source_copies_the_scikit_image_photographs(tmp_path):
    folder = acquire(parse_one({"builtin": ["astronaut", "rocket"]}), tmp_path)
    assert list_images(folder, "p") == ["astronaut.png", "rocket.jpg"]


def test_url_source_downloads_once_verifies_and_extracts(tmp_path, server):
    images = {}
    for name in ("0001.png", "0002.png"):
        write_image(tmp_path / "src" / name)
        images[f"Set/HR/{name}"] = (tmp_path / "src" / name).read_bytes()
    archive = zip_bytes(images)
    server.files["/Set.zip"] = archive
    settings = {"url": f"{server.url}/Set.zip", "size": len(archive),
                "sha256": hashlib.sha256(archive).hexdigest(), "images_in": "Set/HR"}
    spec = parse_one(settings)
    folder = acquire(spec, tmp_path / "raw", progress=False)
    assert list_images(folder, "p") == ["0001.png", "0002.png"]
    assert (tmp_path / "raw" / "downloads" / "Set.zip").exists()
    requests = len(server.requests)
    assert acquire(spec, tmp_path / "raw", progress=False) == folder
    assert len(server.requests) == requests  # cached: no second download


def test_url_source_with_wrong_checksum_fails_and_keeps_nothing(tmp_path, server):
    server.files["/Set.zip"] = zip_bytes({"a.png": b"x"})
    spec = parse_one({"url": f"{server.url}/Set.zip", "sha256": "0" * 64})
    with pytest.raises(ChecksumMismatchError):
        acquire(spec, tmp_path, progress=False)
    assert not list((tmp_path / "downloads").glob("Set.zip*"))


def test_unreachable_url_says_where_to_place_the_file(tmp_path):
    spec = parse_one({"url": "http://127.0.0.1:9/DIV2K_train_HR.zip"})
    with pytest.raises(DownloadError, match="place it at .*downloads/DIV2K_train_HR.zip"):
        acquire(spec, tmp_path, progress=False)
