"""The rules of the train_gan block that tie two settings, refused as the parameters are checked."""

from __future__ import annotations

import pytest
from conftest import with_settings
from test_params import BASE, check, with_value

from srgan_pipeline.architecture import CRITIC_MIN_INPUT
from srgan_pipeline.params import ParameterError, validate_params


def refusal(block: str, changes: dict) -> str:
    params = with_settings(BASE[block], changes)
    with pytest.raises(ParameterError) as error:
        check(block, params)
    return str(error.value)


@pytest.mark.parametrize("phase", ["pretrain", "adversarial"])
def test_a_crop_is_a_multiple_of_the_scale(phase):
    assert refusal("train_gan", {f"{phase}.patch_size": 98}) == (
        f"train_gan.{phase}.patch_size: must be a multiple of scale (4): the LR crop is "
        "patch_size / scale pixels; got 98, use 96 or 100")
    check("train_gan", with_value("train_gan", f"{phase}.patch_size", 100))


def test_the_rule_follows_the_scale_and_needs_one():
    params = with_value("train_gan", "pretrain.patch_size", 98)
    validate_params("train_gan", params, scale=2)
    validate_params("train_gan", params)  # no scale known (phase_config): not checked
    with pytest.raises(ParameterError, match="got 2, use 4$"):
        validate_params("train_gan", with_value("train_gan", "pretrain.patch_size", 2), scale=4)


def test_phase_two_crops_hold_the_critics_smallest_input():
    assert refusal("train_gan", {"adversarial.patch_size": 64}) == (
        "train_gan.adversarial.patch_size is 64, smaller than the 81 px the critic takes (its 4 "
        "stride-2 convolutions must leave a 6x6 map for its pooling): set it to 81 or more "
        "(conf/base: 96)")
    # phase 1 has no critic, and any multiple of the scale from the critic's minimum up fits
    check("train_gan", with_value("train_gan", "pretrain.patch_size", 64))
    check("train_gan", with_value("train_gan", "adversarial.patch_size",
                                  -(-CRITIC_MIN_INPUT // 4) * 4))


@pytest.mark.parametrize(("changes", "message"), [
    ({"device": "cuda:1", "distributed.nproc_per_node": 2},
     "train_gan.device=cuda:1 names one GPU, but nproc_per_node=2 puts process i on GPU i: set "
     "train_gan.device=cuda (or auto), and CUDA_VISIBLE_DEVICES to choose the GPUs"),
    ({"device": "mps", "distributed.nproc_per_node": 2},
     "train_gan.distributed.nproc_per_node=2 runs on CPU (gloo) or CUDA (nccl), not on mps; set "
     "train_gan.device=cpu, or nproc_per_node=1"),
    ({"device": "cpu", "distributed.nproc_per_node": 2, "distributed.sync_batchnorm": True},
     "train_gan.distributed.sync_batchnorm=true needs CUDA (torch's SyncBatchNorm runs on GPUs "
     "only), but training runs on cpu: set it to false (each process then normalises over its "
     "own batch)"),
])
def test_the_device_named_fits_data_parallel_training(changes, message):
    assert refusal("train_gan", changes) == message


def test_a_device_decided_on_the_machine_or_one_process_is_not_refused_here():
    for changes in [{"device": "auto", "distributed.nproc_per_node": 2,
                     "distributed.sync_batchnorm": True},
                    {"device": "cuda:1", "distributed.sync_batchnorm": True}]:
        check("train_gan", with_settings(BASE["train_gan"], changes))
