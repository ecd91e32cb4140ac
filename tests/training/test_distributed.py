"""Data-parallel training on CPU: 2 processes over gloo, tiny models (8 channels, 1 block).

The equivalence tests compare one step of 2 processes with one process that accumulates the
gradients of the same two per-rank batches, each forward on its own batch (BatchNorm statistics
per batch, as DDP computes them), averaged as DDP averages.

Tolerances come from an argument, not from one CPU: both runs are float32 and differ only in
rounding (gloo reduces a + b then / 2 where one process accumulates a / 2 + b / 2; each rank's
convolutions run on its own thread count and on whatever kernels this CPU's oneDNN picks). So
the same computation is also run in float64 (the code's casts to float32 made no-ops), and each
gradient tensor of the data-parallel run may be no further from float64 than K_ROUNDING times
the one-process float32 run is, plus a few float32 ulps of the largest gradient (a tensor the
one-process run happened to get exact). A real fault (a rank's gradient not all-reduced, a sum
where a mean belongs, one batch used twice) moves gradients by their own size, ~1e6 times that.
The weights after the step are checked against one Adam step, in float64, from the starting
weights with the data-parallel run's own gradients: a few ulps of the weight and of lr. Adam's
first step moves each weight by about lr whatever the gradient's size, so comparing weights
with the one-process run's would fail wherever a gradient near zero flips sign by rounding.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import free_port
from torch import nn

from srgan_pipeline.checkpoints import build_generator
from srgan_pipeline.losses import (
    critic_wasserstein_loss,
    generator_adversarial_loss,
    gradient_penalty,
)
from srgan_pipeline.models import Critic, VGGPerceptualLoss, hr_to_unit, unit_to_hr
from srgan_pipeline.params import validate_params
from srgan_pipeline.patches import PatchDataset, TileLoaders, _SampleSeeds, make_loader
from srgan_pipeline.training import clock, phase_config, pretrain, train_adversarial
from srgan_pipeline.training.distributed import (
    DistributedTrainingError,
    World,
    _stopping_signal,
    launch,
    rank_seed,
)
from srgan_pipeline.training.pretrain import Pretraining

SCALE, PATCH, BATCH = 4, 32, 2
GEN = {"scale": SCALE, "channels": 8, "num_blocks": 1}
CPU = torch.device("cpu")


def spread(nproc: int = 2, **overrides):
    return validate_params("train_gan.distributed", {
        "nproc_per_node": nproc, "nnodes": 1, "node_rank": 0, "master_addr": "127.0.0.1",
        "master_port": None, "sync_batchnorm": False} | overrides)


def cfg(phase: str, **overrides):
    tiny = dict(iterations=1, batch_size=BATCH, patch_size=PATCH, lr=1e-3, log_every=1,
                checkpoint_every=100, perceptual_weight=1.0, channels_last=False,
                amp_bf16=False, lr_schedule="constant", lr_milestones=[], seed=3)
    tiny |= {"ema_decay": None} if phase == "pretrain" else {"n_critic": 1}
    return phase_config(phase, **(tiny | overrides))


def batches_of(count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` (LR, HR) batches of random images in [0, 1]."""
    rng = torch.Generator().manual_seed(seed)
    return [(torch.rand(BATCH, 3, PATCH // SCALE, PATCH // SCALE, generator=rng),
             torch.rand(BATCH, 3, PATCH, PATCH, generator=rng)) for _ in range(count)]


def tiny_critic() -> Critic:
    torch.manual_seed(1)
    return Critic(base_channels=8, pool_size=2, hidden=16)


def perceptual() -> VGGPerceptualLoss:
    return VGGPerceptualLoss(layer="relu1_2", weights="random")


def trained(model: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    return {"weights": {k: p.detach().clone() for k, p in model.named_parameters()},
            "grads": {k: p.grad.clone() for k, p in model.named_parameters()}}


# ------------------------------------------------------------------ what each rank runs


def _pretrain_rank(world: World, steps: int) -> dict:
    generator = build_generator(GEN, seed=0)
    mine = batches_of(steps, seed=100 + world.rank)  # this rank's shard
    pretrain(generator, iter(mine), perceptual(), cfg("pretrain", iterations=steps),
             world=world)
    return trained(generator)


def _adversarial_rank(world: World) -> dict:
    generator, critic = build_generator(GEN, seed=0), tiny_critic()
    mine = batches_of(2, seed=100 + world.rank)  # one critic batch, one generator batch
    train_adversarial(generator, critic, iter(mine), perceptual(), cfg("adversarial"),
                      world=world)
    return {"generator": trained(generator), "critic": trained(critic)}


class Counted:
    """An endless batch iterator that counts the batches taken."""

    def __init__(self, batch):
        self.batch, self.taken = batch, 0

    def __iter__(self):
        return self

    def __next__(self):
        self.taken += 1
        return self.batch


def _budget_rank(world: World) -> dict:
    """Rank 1's clock runs a minute per reading, rank 0's is the real one: rank 1 alone
    exceeds max_minutes, and both must stop at the same step (or the other would hang)."""
    if world.rank == 1:
        minutes = iter(range(10**6))
        clock.now = lambda: 60.0 * next(minutes)
    batches = Counted(batches_of(1, seed=world.rank)[0])
    state = pretrain(build_generator(GEN, seed=0), batches, None,
                     cfg("pretrain", iterations=50, perceptual_weight=0.0, max_minutes=5.0),
                     world=world)
    return {"taken": batches.taken, "stopped_because": state and state["stopped_because"]}


def _each_test_rank(world: World) -> dict:
    """Everything the tests below compare, in one launch (starting the processes costs
    more than these trainings)."""
    return {"pretrain": _pretrain_rank(world, 1), "adversarial": _adversarial_rank(world),
            "several": _pretrain_rank(world, 4), "threads": torch.get_num_threads(),
            "mean": world.mean({"rank": world.rank, "one": 1.0}),
            "budget": _budget_rank(world)}


@pytest.fixture(scope="module")
def ranks() -> dict[int, dict]:
    return launch(spread(), CPU, _each_test_rank)


def _failing_rank(world: World, how: str) -> None:
    if world.rank == 1:
        if how.startswith("raise"):
            raise ValueError("rank one cannot go on")
        os.kill(os.getpid(), 9)
    if how == "raise, rank 0 in Python":
        # The launcher's SIGTERM then reaches rank 0's handler for certain: rank 0 stops as
        # for a user's signal ("training stopped by SIGTERM"), yet the cause is rank 1's error.
        while True:
            time.sleep(0.05)
    torch.distributed.barrier()  # rank 0 waits here for a rank that never comes


def _machine_rank(world: World) -> dict:
    return {"rank": world.rank, "size": world.size, "local_rank": world.local_rank,
            "from_main": world.from_main(f"rank {world.rank}'s"),
            "mean": world.mean({"rank": world.rank})["rank"]}


# ------------------------------------------------------------------ tests


K_ROUNDING = 4  # data-parallel vs one-process float32 error (both rounding noise, see top)
EPS32 = torch.finfo(torch.float32).eps


@contextlib.contextmanager
def widened_to(dtype: torch.dtype):
    """The project's ``.float()`` casts (losses, gradient penalty) keep float64 tensors, so
    the one-process reference runs the same code in float64."""
    cast = torch.Tensor.float
    if dtype == torch.float64:
        torch.Tensor.float = lambda t, *a, **k: t if t.dtype == torch.float64 else cast(t, *a, **k)
    try:
        yield
    finally:
        torch.Tensor.float = cast


def as_dtype(batches, dtype):
    return [tuple(x.to(dtype) for x in batch) for batch in batches]


def assert_gradients_match(ddp: dict, one32: dict, one64: dict) -> None:
    for name, exact in one64.items():
        exact = exact.double()
        ddp_error = (ddp[name].double() - exact).abs().max().item()
        one_error = (one32[name].double() - exact).abs().max().item()
        bound = K_ROUNDING * one_error + 4 * EPS32 * exact.abs().max().item()
        assert ddp_error <= bound, (f"{name}: data-parallel gradient {ddp_error:.3g} from "
                                    f"float64, one process {one_error:.3g} (bound {bound:.3g})")


def assert_one_adam_step(ddp: dict, start: nn.Module, lr: float, betas) -> None:
    """``ddp["weights"]`` = one Adam step from ``start`` with ``ddp["grads"]``, to float32
    rounding of the weight and of the step (~lr)."""
    weights = {k: p.detach().double().clone().requires_grad_(True)
               for k, p in start.named_parameters()}
    for name, weight in weights.items():
        weight.grad = ddp["grads"][name].double()
    torch.optim.Adam(weights.values(), lr=lr, betas=betas).step()
    for name, expected in weights.items():
        error = (ddp["weights"][name].double() - expected.detach()).abs()
        bound = 4 * EPS32 * (expected.detach().abs() + lr)
        assert (error <= bound).all(), f"{name}: {error.max():.3g} off one Adam step"


def pretrain_gradients(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """One process, both ranks' batches accumulated as DDP averages them, in ``dtype``."""
    generator = build_generator(GEN, seed=0).to(dtype)
    phase = Pretraining(cfg("pretrain"), generator, perceptual().to(dtype))
    with widened_to(dtype):
        for low_res, high_res in as_dtype([batches_of(1, seed=100 + r)[0] for r in (0, 1)],
                                          dtype):
            _, total = phase.content_loss("pretrain", hr_to_unit(generator(low_res)), high_res)
            (total / 2).backward()  # DDP averages the ranks' gradients
    return trained(generator)["grads"]


def test_one_pretraining_step_on_two_processes_equals_accumulating_both_batches(ranks):
    one32, one64 = pretrain_gradients(torch.float32), pretrain_gradients(torch.float64)
    settings = cfg("pretrain")
    for rank in (0, 1):
        assert_gradients_match(ranks[rank]["pretrain"]["grads"], one32, one64)
        assert_one_adam_step(ranks[rank]["pretrain"], build_generator(GEN, seed=0),
                             settings.lr, settings.betas)


def adversarial_gradients(dtype: torch.dtype, critic_after: dict[str, torch.Tensor]
                          ) -> dict[str, dict[str, torch.Tensor]]:
    """The critic's gradients of each rank's critic step, then the generator's of each rank's
    generator step against the critic the data-parallel run stepped to (``critic_after``, so
    that the generator's reference does not inherit the critic's rounding), in ``dtype``."""
    generator, critic, vgg = build_generator(GEN, seed=0).to(dtype), tiny_critic().to(dtype), \
        perceptual().to(dtype)
    settings = cfg("adversarial")
    shards = [as_dtype(batches_of(2, seed=100 + r), dtype) for r in (0, 1)]
    with widened_to(dtype):
        for rank, shard in enumerate(shards):  # the critic step of each rank
            low_res, high_res = shard[0]
            # The gradient penalty's mixes: rank 0 draws as one process does, rank 1 its own.
            torch.manual_seed(settings.seed if rank == 0 else rank_seed(settings.seed, rank))
            real = unit_to_hr(high_res)
            with torch.no_grad():
                fake = generator(low_res)
            real_scores, fake_scores = critic(torch.cat([real, fake])).chunk(2)
            loss = critic_wasserstein_loss(real_scores, fake_scores) + gradient_penalty(
                critic, real, fake, settings.gp_weight)
            (loss / 2).backward()
        critic_grads = trained(critic)["grads"]
        with torch.no_grad():
            for name, weight in critic.named_parameters():
                weight.copy_(critic_after[name])
        critic.requires_grad_(False)
        phase = Pretraining(cfg("pretrain"), generator, vgg)  # for its content_loss
        for shard in shards:  # the generator step of each rank
            low_res, high_res = shard[1]
            sr = generator(low_res)
            _, total = phase.content_loss("gan", hr_to_unit(sr), high_res)
            total = total + settings.adversarial_weight * generator_adversarial_loss(critic(sr))
            (total / 2).backward()
    return {"critic": critic_grads, "generator": trained(generator)["grads"]}


def test_one_adversarial_step_on_two_processes_equals_accumulating_both_batches(ranks):
    settings = cfg("adversarial")
    for rank in (0, 1):
        ddp = ranks[rank]["adversarial"]
        after = ddp["critic"]["weights"]
        one32 = adversarial_gradients(torch.float32, after)
        one64 = adversarial_gradients(torch.float64, after)
        for model in ("critic", "generator"):
            assert_gradients_match(ddp[model]["grads"], one32[model], one64[model])
        assert_one_adam_step(ddp["critic"], tiny_critic(), settings.critic_lr,
                             settings.critic_betas)
        assert_one_adam_step(ddp["generator"], build_generator(GEN, seed=0), settings.lr,
                             settings.betas)


def test_ranks_hold_identical_weights_after_several_steps(ranks):
    # Parameters bit for bit; BatchNorm's running statistics are each rank's own between
    # forwards (DDP broadcasts rank 0's at each one), and checkpoints hold rank 0's.
    for name, weight in ranks[0]["several"]["weights"].items():
        assert torch.equal(weight, ranks[1]["several"]["weights"][name]), name


def test_ranks_average_their_metrics_split_the_threads_and_agree_on_the_time_budget(ranks):
    threads = max(1, torch.get_num_threads() // 2)  # this process's threads, per process
    for rank in (0, 1):
        assert ranks[rank]["mean"] == {"rank": 0.5, "one": 1.0}
        assert ranks[rank]["threads"] == threads
    assert ranks[0]["budget"]["taken"] == ranks[1]["budget"]["taken"] < 50
    assert ranks[0]["budget"]["stopped_because"] == "max_minutes"


@pytest.mark.parametrize("how, error", [
    ("raise", "ValueError: rank one cannot go on"),
    ("raise, rank 0 in Python", "ValueError: rank one cannot go on"),
    ("die", "SIGKILL")])
def test_a_failing_rank_ends_the_run_promptly_naming_the_rank_and_its_error(how, error):
    started = time.monotonic()
    # "die" also takes the several-machines rendezvous (a fixed master_port), on one machine
    settings = spread(master_port=free_port()) if how == "die" else spread()
    with pytest.raises(DistributedTrainingError) as failure:
        launch(settings, CPU, _failing_rank, how)
    assert time.monotonic() - started < 60  # not the collective's 30-minute timeout
    message = str(failure.value)
    assert message.startswith("data-parallel training stopped: rank 1 ")
    assert error in message and "train_gan.resume=true" in message


def test_a_run_counts_as_interrupted_only_when_no_rank_failed_on_its_own_error():
    term = "training stopped by SIGTERM at pretrain step 4, checkpoint written: continue"
    assert _stopping_signal([(0, term), (1, "Connection closed by peer [127.0.0.1]:5")]) \
        == "SIGTERM"
    assert _stopping_signal([(1, "Connection reset by peer"), (0, term)]) == "SIGTERM"
    assert _stopping_signal([(1, "training stopped by SIGINT: ...")]) == "SIGINT"
    # a rank's own error, whatever the launcher's SIGTERM made of the others
    assert _stopping_signal([(1, "ValueError: rank one cannot go on"), (0, term)]) is None
    assert _stopping_signal([(0, term), (1, "RuntimeError: CUDA out of memory")]) is None
    assert _stopping_signal([(0, "Signal 15 (SIGTERM) received by PID 12")]) is None


def test_two_machines_of_one_process_each_make_one_world(tmp_path):
    """Node 1 as a second "machine" (a process of its own, as its kedro run would be)."""
    port, here = free_port(), Path(__file__).parent
    node_one = tmp_path / "node_one.py"
    node_one.write_text(
        f"import json, sys\nsys.path[:0] = [{str(here)!r}, {str(here.parent)!r}]\n"
        "from test_distributed import CPU, _machine_rank, launch, spread\n"
        "if __name__ == '__main__':\n"
        f"    ranks = launch(spread(1, nnodes=2, node_rank=1, master_port={port}), CPU, "
        "_machine_rank)\n"
        "    print(json.dumps(ranks))\n")
    other = subprocess.Popen([sys.executable, str(node_one)], stdout=subprocess.PIPE, text=True)
    try:
        mine = launch(spread(1, nnodes=2, node_rank=0, master_port=port), CPU, _machine_rank)
        out, _ = other.communicate(timeout=120)
    finally:
        other.kill()
    theirs = {int(rank): value for rank, value in json.loads(out.splitlines()[-1]).items()}
    assert mine == {0: {"rank": 0, "size": 2, "local_rank": 0, "from_main": "rank 0's",
                        "mean": 0.5}}
    assert theirs == {1: {"rank": 1, "size": 2, "local_rank": 0, "from_main": "rank 0's",
                          "mean": 0.5}}


def test_each_rank_reads_a_disjoint_shard_and_together_the_stream_in_order():
    stream = _SampleSeeds(50, seed=7, start=6)
    one = [next(it) for it in [iter(stream)] for _ in range(12)]
    shards = [iter(_SampleSeeds(50, seed=7, start=6, batch_size=2, rank=r, world_size=3))
              for r in range(3)]
    # Global batches of 2 x 3: rank r's batch g is samples 6 + 6g + 2r, 6 + 6g + 2r + 1.
    merged = [next(shards[r]) for _ in range(2) for r in range(3) for _ in range(2)]
    assert merged == one


def test_a_rank_batch_is_its_share_of_the_one_process_global_batch():
    from test_patches import coded_tiles  # the same synthetic tiles as the loop tests

    dataset = PatchDataset(TileLoaders(*coded_tiles(), scale=SCALE), patch_size=PATCH)
    low_res, high_res = next(make_loader(dataset, 4, 0, 5, CPU, start_sample=8))
    for rank in (0, 1):
        lr_r, hr_r = next(make_loader(dataset, 2, 0, 5, CPU, start_sample=8, rank=rank,
                                      world_size=2))
        assert torch.equal(lr_r, low_res[2 * rank: 2 * rank + 2])
        assert torch.equal(hr_r, high_res[2 * rank: 2 * rank + 2])


@pytest.mark.parametrize("overrides, expected", [
    ({"node_rank": 2, "nnodes": 2, "master_port": 29500},
     "train_gan.distributed: node_rank (2) must be < nnodes (2)"),
    ({"nnodes": 2}, "train_gan.distributed: nnodes is 2 but master_port is null"),
    ({"nproc_per_node": 0}, "train_gan.distributed.nproc_per_node: must be >= 1, got 0"),
    ({"master_port": 70000}, "train_gan.distributed.master_port: must be <= 65535"),
    ({"nprocs": 2}, "train_gan.distributed.nprocs: unknown key; valid keys: nproc_per_node"),
])
def test_bad_distributed_settings_are_named(overrides, expected):
    with pytest.raises(ValueError) as error:
        spread(**overrides)
    assert expected in str(error.value)


def test_sync_batchnorm_and_gpu_only_choices_are_refused_on_cpu_before_any_process_starts():
    with pytest.raises(ValueError, match="sync_batchnorm=true needs CUDA"):
        launch(spread(sync_batchnorm=True), CPU, _pretrain_rank, 1)
    with pytest.raises(ValueError, match="runs on CPU \\(gloo\\) or CUDA \\(nccl\\)"):
        launch(spread(), torch.device("mps"), _pretrain_rank, 1)
