"""Project hooks: runs in one project read back their own outputs."""

import time

import torch
from kedro.io import DataCatalog
from kedro.io.core import Version
from kedro.pipeline import Node, Pipeline

from srgan_pipeline.datasets import TorchCheckpointDataset
from srgan_pipeline.hooks import pin_own_outputs


def test_a_run_reads_back_its_own_output_not_a_newer_one_of_another_run(tmp_path):
    path = str(tmp_path / "generator_gan.pt")
    mine, theirs = "2026-01-01T00.00.00.000Z", "2026-01-01T00.00.01.000Z"
    catalog = DataCatalog({
        "generator_gan": TorchCheckpointDataset(filepath=path, version=Version(None, mine)),
        "summary": TorchCheckpointDataset(filepath=str(tmp_path / "input.pt"),
                                          version=Version(None, mine)),
    })
    pipeline = Pipeline([Node(lambda x: x, "summary", "generator_gan", name="train"),
                         Node(lambda x: None, "generator_gan", None, name="evaluate")])
    assert pin_own_outputs(pipeline, catalog) == ["generator_gan"]

    catalog.save("generator_gan", {"run": "mine"})
    time.sleep(0.01)
    TorchCheckpointDataset(filepath=path, version=Version(None, theirs)).save({"run": "theirs"})
    assert catalog.load("generator_gan")() == {"run": "mine"}
    # an input this run does not produce still resolves to the latest version
    TorchCheckpointDataset(filepath=str(tmp_path / "input.pt"),
                           version=Version(None, theirs)).save({"v": torch.ones(1)})
    assert catalog.load("summary")()["v"].item() == 1.0
