"""The run identity of a training phase (resume.phase_identity, resume.run_identity):
what docs/training.md says a resume may change keeps it; what decides the weights changes it."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from conftest import conf_parameters, documentation
from test_training_store import SCALE, SHAPES, SIZE, STRIDE, content, photo

from srgan_pipeline.checkpoints import build_generator, describe_generator
from srgan_pipeline.params import validate_params
from srgan_pipeline.resume import phase_identity
from srgan_pipeline.training_store import StoreContent, TrainingStore, write_store

QUICKSTART = conf_parameters("quickstart")["train_gan"]
TINY_GENERATOR = {"scale": SCALE, "channels": 8, "num_blocks": 1}


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, TrainingStore]:
    """The store a run trained on, the same rewritten from the same images, and one of other
    pixels under the same names and sizes (data_prep re-run on other images)."""
    folder = tmp_path_factory.mktemp("stores")
    other = {key: (partial(photo, shape, seed + 10), shape)
             for seed, (key, shape) in enumerate(SHAPES.items())}
    for name, written in (("store", content()), ("rewritten", content()),
                          ("other_pixels", StoreContent(other, SCALE, SIZE, STRIDE))):
        write_store(folder / name, written)
    return {name: TrainingStore(folder / name)
            for name in ("store", "rewritten", "other_pixels")}


@pytest.fixture(scope="module")
def vgg_files(tmp_path_factory) -> dict[str, Path]:
    """VGG weights files: one, a copy of it elsewhere, and other bytes at the first one's path
    (written when the test asks for it)."""
    folder = tmp_path_factory.mktemp("vgg")
    (folder / "moved").mkdir()
    for path in (folder / "vgg.pth", folder / "moved" / "vgg.pth"):
        path.write_bytes(b"vgg19 weights" * 100)
    return {"file": folder / "vgg.pth", "moved": folder / "moved" / "vgg.pth"}


def pretrained(seed: int = 0, **architecture) -> dict:
    """A phase-1 checkpoint as phase 2 receives it: its generator's architecture and weights."""
    generator = build_generator(TINY_GENERATOR | architecture, seed=seed)
    return {"generator_config": describe_generator(generator),
            "generator": generator.state_dict()}


def identity(phase: str, changes: dict | None = None, store: TrainingStore | None = None,
             start: dict | None = None, stores=None, vgg_files=None) -> str:
    """The identity digest of ``phase`` under quickstart's settings, with the perceptual loss
    on in both phases (by a weights file, so that the file is part of it), and ``changes``
    (dotted keys below train_gan, as --params sets them)."""
    params = _copy(QUICKSTART)
    for key, value in ({"pretrain.perceptual_weight": 0.01,
                        "perceptual.weights": str(vgg_files["file"])} | (changes or {})).items():
        *parents, last = key.split(".")
        target = params
        for parent in parents:
            target = target[parent]
        target[last] = value
    settings = validate_params("train_gan", params)
    return phase_identity(phase, settings, store or stores["store"], scale=SCALE,
                          pretrained=start or pretrained())["digest"]


def _copy(value):
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, dict) else value


PHASES = ("pretrain", "adversarial")
# docs/training.md, "Run identity": "except iterations, max_minutes, min_iterations, log_every,
# checkpoint_every, channels_last, amp_bf16 and compile, which a resume may change"; and
# (data-parallel) the processes and sync_batchnorm.
RUN_CONTROL = [("iterations", 7), ("max_minutes", 30.0), ("min_iterations", 5), ("log_every", 3),
               ("checkpoint_every", 9), ("channels_last", False), ("amp_bf16", False),
               ("compile", "reduce-overhead")]
NOT_THE_RUN = [("device", "cpu"), ("num_workers", 3), ("resume", True),
               ("distributed.nproc_per_node", 2), ("distributed.sync_batchnorm", True)]


def test_the_docs_name_what_a_resume_may_change():
    keys = [f"`{key}`" for key, _ in RUN_CONTROL]
    sentence = f"(except {', '.join(keys[:-1])} and {keys[-1]}, which a resume may change)"
    assert sentence in " ".join(documentation("training.md").split())


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize(("key", "value"), RUN_CONTROL)
def test_what_a_resume_may_change_keeps_the_identity(phase, key, value, stores, vgg_files):
    same = partial(identity, phase, stores=stores, vgg_files=vgg_files)
    # a floor needs a time budget to stand under (params: refused without one)
    budget = {f"{phase}.max_minutes": 30.0} if key == "min_iterations" else {}
    assert same({f"{phase}.{key}": value, **budget}) == same()


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize(("key", "value"), NOT_THE_RUN)
def test_where_and_how_many_processes_train_keeps_the_identity(phase, key, value, stores,
                                                              vgg_files):
    same = partial(identity, phase, stores=stores, vgg_files=vgg_files)
    assert same({key: value}) == same()


@pytest.mark.parametrize(("phase", "key", "value"), [
    *[(phase, f"{phase}.{key}", value) for phase in PHASES for key, value in (
        ("seed", 1), ("lr", 3e-4), ("batch_size", 3), ("patch_size", 128),
        ("pixel_loss", "l1"), ("perceptual_weight", 0.5))],
    ("pretrain", "generator.channels", 16),        # phase 1 builds the generator from these
    ("pretrain", "generator.num_blocks", 2),
    ("pretrain", "generator.input_skip", False),
    ("adversarial", "critic.base_channels", 8),
    ("adversarial", "adversarial.n_critic", 2),
    ("adversarial", "adversarial.gp_weight", 5.0),
    *[(phase, "perceptual.layer", "relu5_4") for phase in PHASES],
])
def test_a_setting_that_decides_the_weights_changes_the_identity(phase, key, value, stores,
                                                                 vgg_files):
    same = partial(identity, phase, stores=stores, vgg_files=vgg_files)
    assert same({key: value}) != same()


@pytest.mark.parametrize("phase", PHASES)
def test_the_training_data_enters_by_its_pixels(phase, stores, vgg_files):
    same = partial(identity, phase, stores=stores, vgg_files=vgg_files)
    assert same(store=stores["rewritten"]) == same()  # data_prep re-run on the same images
    assert same(store=stores["other_pixels"]) != same()


@pytest.mark.parametrize("phase", PHASES)
def test_the_vgg_weights_file_enters_by_its_content_not_its_path(phase, stores, vgg_files):
    same = partial(identity, phase, stores=stores, vgg_files=vgg_files)
    before = same()
    assert same({"perceptual.weights": str(vgg_files["moved"])}) == before
    original = vgg_files["file"].read_bytes()
    try:
        vgg_files["file"].write_bytes(b"other weights" * 100)
        assert same() != before
    finally:
        vgg_files["file"].write_bytes(original)


def test_phase_two_belongs_to_the_weights_and_architecture_it_starts_from(stores, vgg_files):
    same = partial(identity, "adversarial", stores=stores, vgg_files=vgg_files)
    assert same(start=pretrained(seed=0)) == same()
    assert same(start=pretrained(seed=1)) != same()                 # other starting weights
    assert same(start=pretrained(channels=16)) != same()            # another architecture
    # phase 2's generator is the checkpoint's: train_gan.generator does not decide it
    assert same({"generator.channels": 16}) == same()
