"""kedro-viz previews of the image datasets: small base64 PNGs that kedro-viz recognises."""

import base64
import importlib
import inspect
import io

import numpy as np
import pytest
from kedro.io.core import DatasetError, Version
from PIL import Image

from srgan_pipeline.datasets import RGBImageDataset, VersionedImageFolderDataset

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 160, 0)


def decode(preview) -> Image.Image:
    """The PNG in a preview string, as kedro-viz's UI reads it (``data:image/png;base64,...``)."""
    assert isinstance(preview, str) and not preview.startswith("data:")
    payload = base64.b64decode(preview, validate=True)
    assert payload.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(payload))
    image.load()
    assert image.format == "PNG" and image.mode == "RGB"
    return image


def preview_type(dataset) -> str:
    """What kedro-viz 12 reads as the preview type (``DataNodeMetadata.set_preview_type``)."""
    annotation = inspect.signature(dataset.preview).return_annotation
    return getattr(annotation, "__name__", str(annotation))


def halves(width, height, left=RED, right=BLUE):
    array = np.empty((height, width, 3), np.uint8)
    array[:, : width // 2], array[:, width // 2:] = left, right
    return array


def near(pixel, colour, tolerance=12):
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_image_preview_is_a_small_png_of_the_saved_image(tmp_path):
    dataset = RGBImageDataset(filepath=str(tmp_path / "wide.png"))
    dataset.save(halves(1200, 300))
    assert preview_type(dataset) == "ImagePreview"

    image = decode(dataset.preview())
    assert image.size == (512, 128)  # longest side 512, aspect kept
    assert near(image.getpixel((10, 64)), RED) and near(image.getpixel((500, 64)), BLUE)
    assert decode(dataset.preview(max_size=64)).size == (64, 16)


def test_image_preview_never_enlarges_and_handles_other_modes(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((30, 40), 200, np.uint8)).save(path)  # mode L
    image = decode(RGBImageDataset(filepath=str(path)).preview())
    assert image.size == (40, 30) and near(image.getpixel((5, 5)), (200, 200, 200), 0)


def test_image_preview_of_a_missing_file_fails(tmp_path):
    with pytest.raises(DatasetError):
        RGBImageDataset(filepath=str(tmp_path / "absent.png")).preview()


def save_version(path, version, images):
    VersionedImageFolderDataset(filepath=str(path), version=Version(None, version)).save(images)


def test_folder_preview_is_a_contact_sheet_of_the_latest_version(tmp_path):
    path = tmp_path / "comparisons"
    save_version(path, "2026-01-01T00.00.00.000Z",
                 {"set5/baby": np.full((96, 480, 3), GREEN, np.uint8)})
    save_version(path, "2026-01-02T00.00.00.000Z", {
        "b/second": np.full((192, 960, 3), BLUE, np.uint8),   # a wide comparison figure
        "a/first": np.full((192, 960, 3), RED, np.uint8),     # keys sort: this one on top
        "c/third": lambda: np.full((50, 50, 3), GREEN, np.uint8),
    })
    dataset = VersionedImageFolderDataset(filepath=str(path), version=Version(None, None))
    assert preview_type(dataset) == "ImagePreview"

    sheet = decode(dataset.preview())
    assert max(sheet.size) <= 512 and sheet.width == 512
    assert 2 * 102 + 50 <= sheet.height <= 2 * 102 + 50 + 3 * 4 + 2  # three rows and gaps
    assert near(sheet.getpixel((256, 20)), RED)       # first key, latest version
    assert near(sheet.getpixel((256, 150)), BLUE)
    assert near(sheet.getpixel((20, sheet.height - 10)), GREEN)
    assert near(sheet.getpixel((500, sheet.height - 10)), (255, 255, 255))  # padding

    first_only = decode(dataset.preview(max_size=128, max_images=1))
    assert first_only.size == (128, 26) and near(first_only.getpixel((64, 13)), RED)

    older = VersionedImageFolderDataset(
        filepath=str(path), version=Version("2026-01-01T00.00.00.000Z", None))
    assert near(decode(older.preview()).getpixel((5, 5)), GREEN)


def test_folder_preview_without_any_saved_version_fails(tmp_path):
    dataset = VersionedImageFolderDataset(filepath=str(tmp_path / "x"), version=Version(None, None))
    with pytest.raises(DatasetError):
        dataset.preview()
    with pytest.raises(ValueError, match="max_images"):
        dataset.preview(max_images=0)


def test_kedro_viz_renders_the_previews_with_catalog_preview_args(tmp_path, monkeypatch):
    """kedro-viz's own node metadata: preview type, and ``preview_args`` from the catalog."""
    # kedro-viz is a dependency: if it moves these modules, this check must be redone, not skipped
    flowchart = importlib.import_module("kedro_viz.models.flowchart.nodes")
    metadata = importlib.import_module("kedro_viz.models.flowchart.node_metadata")
    monkeypatch.setattr(metadata.DataNodeMetadata, "is_all_previews_enabled", True)
    save_version(tmp_path / "figures", "2026-01-01T00.00.00.000Z",
                 {"a": halves(300, 100)})
    datasets = {
        "figures": VersionedImageFolderDataset(
            filepath=str(tmp_path / "figures"), version=Version(None, None),
            metadata={"kedro-viz": {"layer": "reporting", "preview_args": {"max_size": 60}}}),
        "image": RGBImageDataset(filepath=str(tmp_path / "figures" / "2026-01-01T00.00.00.000Z"
                                              / "figures" / "a.png")),
    }
    sizes = {}
    for name, dataset in datasets.items():
        node = flowchart.GraphNode.create_data_node(
            dataset_id=name, dataset_name=name, layer="reporting", tags=set(),
            dataset=dataset, modular_pipelines=None)
        meta = metadata.DataNodeMetadata(data_node=node)
        assert meta.preview_type == "ImagePreview", name
        # kedro-viz logs a failing preview() as a warning and serves None
        assert meta.preview is not None, f"kedro-viz could not preview {name}"
        sizes[name] = decode(meta.preview).size
    assert sizes == {"figures": (60, 20), "image": (300, 100)}
