import hashlib
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, documentation, tar_bytes, write_image, zip_bytes

from srgan_pipeline.downloads import ChecksumMismatchError, DownloadError
from srgan_pipeline.sources import (
    SourceError,
    acquire,
    archive_path,
    check_distinct_names,
    list_images,
    parse_sources,
    scan_folder,
)


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
        ({"url": "http://h/a.zip", "images_in": "../b/HR"}, "images_in: must be a folder inside"),
        ({"path": "/x", "images_in": "/etc"}, "images_in: must be a folder inside"),
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
    # visible files of other types are returned apart, for the caller to report as skipped
    assert scan_folder(folder, "p") == (["b.png", "sub/a.jpg"], ["notes.txt"])


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
    assert (tmp_path / "raw" / "downloads" / "s" / "Set.zip").exists()
    requests = len(server.requests)
    assert acquire(spec, tmp_path / "raw", progress=False) == folder
    assert len(server.requests) == requests  # cached: no second download


def test_url_source_with_wrong_checksum_fails_and_keeps_nothing(tmp_path, server):
    server.files["/Set.zip"] = zip_bytes({"a.png": b"x"})
    spec = parse_one({"url": f"{server.url}/Set.zip", "sha256": "0" * 64})
    with pytest.raises(ChecksumMismatchError):
        acquire(spec, tmp_path, progress=False)
    assert not list((tmp_path / "downloads").rglob("Set.zip*"))


def test_unreachable_url_says_where_to_place_the_file(tmp_path):
    spec = parse_one({"url": "http://127.0.0.1:9/DIV2K_train_HR.zip"})
    with pytest.raises(DownloadError, match="place it at .*downloads/s/DIV2K_train_HR.zip"):
        acquire(spec, tmp_path, progress=False)


# --- Distinct sources never share a download or an extraction folder --------------------------

def _archive_of(tmp_path, build, names, seed):
    images = {}
    for offset, name in enumerate(names):
        write_image(tmp_path / "src" / name, (20, 16), seed=seed + offset)
        images[name] = (tmp_path / "src" / name).read_bytes()
    return build(images), images


@pytest.mark.parametrize(
    ("path_a", "path_b", "build_a", "build_b"),
    [
        ("/one/data.zip", "/two/data.zip", zip_bytes, zip_bytes),  # same file name
        ("/good.zip", "/good.tar", zip_bytes, tar_bytes),          # same stem
        ("/x/set.tar.gz?v=1", "/y/set.tar.gz?v=2",
         lambda f: tar_bytes(f, "w:gz"), lambda f: tar_bytes(f, "w:gz")),
    ],
)
def test_two_sources_get_their_own_download_and_folder(tmp_path, server, path_a, path_b,
                                                       build_a, build_b):
    data_a, images_a = _archive_of(tmp_path, build_a, ["a1.png", "a2.png"], seed=1)
    data_b, images_b = _archive_of(tmp_path, build_b, ["b1.png"], seed=5)
    server.files[path_a], server.files[path_b] = data_a, data_b
    specs = parse_sources({"a": {"url": server.url + path_a}, "b": {"url": server.url + path_b}},
                          "data_prep.train_sources")
    folders = [acquire(spec, tmp_path / "raw", progress=False) for spec in specs]
    assert folders[0] != folders[1]
    for folder, images in zip(folders, (images_a, images_b), strict=True):
        assert list_images(folder, "p") == sorted(images)
        for name, content in images.items():
            assert (folder / name).read_bytes() == content
    assert sorted(p for p, _ in server.requests) == sorted([path_a, path_b])
    # again: both come from disk, neither replaced the other
    again = [acquire(spec, tmp_path / "raw", progress=False) for spec in specs]
    assert again == folders and list_images(folders[0], "p") == sorted(images_a)
    assert len(server.requests) == 2


def test_archive_path_is_keyed_by_source(tmp_path):
    spec = parse_one({"url": "https://h/x/DIV2K_train_HR.zip?download=1"}, name="div2k")
    assert archive_path(spec, tmp_path) == tmp_path / "downloads" / "div2k" / "DIV2K_train_HR.zip"


def test_the_docs_name_the_exact_offline_paths():
    """docs/data.md "Providing the data sets offline" names the path each conf/base source
    uses."""
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_data_prep.yml").read_text())
    page = documentation("data.md").split("### Providing the data sets offline")[1]
    raw_dir = Path(params["data_prep"]["raw_dir"])
    urls = [spec for group in ("train_sources", "eval_sets") for spec in parse_sources(
        {name: s for name, s in params["data_prep"][group].items() if s.get("url")},
        f"data_prep.{group}")]
    assert len(urls) >= 3
    for spec in urls:
        assert f"`{archive_path(spec, raw_dir).as_posix()}`" in page, spec.name


@pytest.mark.parametrize("name", ["../up", "a/b", "", ".hidden", "sp ace"])
def test_a_source_name_that_is_not_a_plain_folder_name_is_refused(name):
    with pytest.raises(SourceError, match="name"):
        parse_sources({name: {"path": "/x"}}, "data_prep.eval_sets")


@pytest.mark.parametrize(("train", "evaluation"), [("set", "set"), ("Set", "set")])
def test_train_and_eval_sources_of_one_name_are_refused(tmp_path, train, evaluation):
    groups = {"data_prep.train_sources": parse_sources({train: {"url": "http://h/a.zip"}},
                                                       "data_prep.train_sources"),
              "data_prep.eval_sets": parse_sources({evaluation: {"url": "http://h/b.zip"}},
                                                   "data_prep.eval_sets")}
    with pytest.raises(SourceError) as error:
        check_distinct_names(groups)
    assert f"data_prep.train_sources.{train}" in str(error.value)
    assert f"data_prep.eval_sets.{evaluation}" in str(error.value)


def test_a_changed_url_does_not_reuse_the_old_download(tmp_path, server):
    server.files["/v1/set.zip"], old = _archive_of(tmp_path, zip_bytes, ["old.png"], seed=1)
    server.files["/v2/set.zip"], new = _archive_of(tmp_path, zip_bytes, ["new.png"], seed=2)
    raw = tmp_path / "raw"
    acquire(parse_one({"url": f"{server.url}/v1/set.zip"}), raw, progress=False)
    spec = parse_one({"url": f"{server.url}/v2/set.zip"})
    with pytest.raises(SourceError, match="downloaded from .*/v1/set.zip") as error:
        acquire(spec, raw, progress=False)
    assert "data_prep.train_sources.s.url" in str(error.value)
    shutil.rmtree(raw / "downloads" / "s")  # what the message says to do
    assert list_images(acquire(spec, raw, progress=False), "p") == sorted(new)


def test_an_archive_in_the_old_shared_folder_is_pointed_at_not_used(tmp_path, caplog):
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "DIV2K_train_HR.zip").write_bytes(b"from an earlier version")
    spec = parse_one({"url": "http://127.0.0.1:9/DIV2K_train_HR.zip"}, name="div2k")
    with pytest.raises(DownloadError):
        acquire(spec, tmp_path, progress=False)
    assert "move it to " + str(tmp_path / "downloads" / "div2k" / "DIV2K_train_HR.zip") in (
        caplog.text.replace("\n", " "))
