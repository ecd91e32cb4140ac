"""Generator and critic checkpoints: what they hold, how a model is rebuilt and loaded from one.

A generator checkpoint (written by train_gan, read by evaluation, upscale and serving) is a dict
of plain types that ``torch.load(path, weights_only=True)`` reads back:

* ``generator_config``: the architecture (:func:`describe_generator`), so the weights can be
  rebuilt without knowing the parameters of the run that trained them;
* ``generator``: the weights; ``generator_ema``: their moving average, when phase 1 kept one
  (then the weights to evaluate and to continue from: :func:`evaluated_weights`);
* the phase's training state (optimisers, RNG, counters: see ``training.state``).

The Kedro pipelines pass checkpoints as loaders (``CheckpointLoader``): a partitioned or
versioned dataset is read only when a node calls it, so evaluating bicubic alone reads none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from srgan_pipeline.models import Generator
from srgan_pipeline.names import GENERATOR_DATASETS

CheckpointLoader = Callable[[], dict[str, Any]]

# Generator constructor arguments that decide its weights' shapes and what they compute
# (residual_init_scale only changes the initial values, which a checkpoint overwrites).
ARCHITECTURE = ("scale", "channels", "num_blocks", "input_skip")


def generator_checkpoint(model: str, generator_pretrained: CheckpointLoader,
                         generator_gan: CheckpointLoader) -> CheckpointLoader:
    """The loader of ``model``'s checkpoint ("srresnet" or "srgan") among the train_gan outputs."""
    loaders = {"generator_pretrained": generator_pretrained, "generator_gan": generator_gan}
    return loaders[GENERATOR_DATASETS[model]]


def describe_generator(generator: Generator) -> dict[str, Any]:
    """The architecture fields of a generator, as its checkpoints record them."""
    return {key: generator.config[key] for key in ARCHITECTURE}


def build_generator(generator_config: Mapping[str, Any], seed: int | None = None) -> Generator:
    """Generator(**generator_config); ``seed`` makes the initial weights repeatable."""
    valid = set(ARCHITECTURE) | {"residual_init_scale"}
    unknown = sorted(set(generator_config) - valid)
    if unknown:
        raise ValueError(f"unknown generator_config field(s) {unknown}; valid: {sorted(valid)}")
    if seed is not None:
        torch.manual_seed(seed)
    return Generator(**generator_config)


def checked_checkpoint(state: Any, name: str = "the checkpoint") -> Mapping[str, Any]:
    """``state`` if it is a generator checkpoint written by this project, else a clear error.

    A plain ``state_dict()`` saved by hand has the weights but not the architecture they
    belong to (``generator_config``), so it cannot be loaded safely.
    """
    if isinstance(state, Mapping) and isinstance(state.get("generator_config"), Mapping) \
            and isinstance(state.get("generator"), Mapping):
        return state
    if isinstance(state, Mapping) and state and all(
            isinstance(v, torch.Tensor) for v in state.values()):
        what = f"a plain state dict (keys {', '.join(list(state)[:3])}, ...)"
    else:
        keys = list(state)[:6] if isinstance(state, Mapping) else None
        what = f"a {type(state).__name__}" + (f" with keys {keys}" if keys is not None else "")
    raise ValueError(
        f"{name} is {what}, not a generator checkpoint written by train_gan: it lacks "
        "'generator_config' (the architecture) and 'generator' (the weights). Train one with "
        "`kedro run --pipelines=train_gan`, or pin a version that train_gan wrote with "
        "--load-versions=<dataset>:<version>."
    )


def load_generator_state(generator: Generator, state: Mapping[str, Any]) -> None:
    """Load a checkpoint's generator weights, refusing a different architecture clearly."""
    have, want = checked_checkpoint(state)["generator_config"], describe_generator(generator)
    _refuse_other_architecture("generator", have, want, want, state,
                               ". Build the generator with the checkpoint's generator_config, "
                               "or start without this checkpoint.")
    generator.load_state_dict(state["generator"])


def load_critic_state(critic: nn.Module, state: Mapping[str, Any]) -> None:
    """Load a checkpoint's critic, naming the settings that differ rather than tensor sizes."""
    have, want = state.get("critic_config") or {}, getattr(critic, "config", {})
    # Only the fields the checkpoint records: an older one without critic_config loads as is.
    _refuse_other_architecture("critic", have, want, have, state,
                               "(train_gan.critic). Use the checkpoint's critic settings, or "
                               "start phase 2 without this checkpoint.")
    critic.load_state_dict(state["critic"])


def _refuse_other_architecture(what: str, have: Mapping[str, Any], want: Mapping[str, Any],
                               keys: Any, state: Mapping[str, Any], advice: str) -> None:
    diffs = [f"{k}: checkpoint {have.get(k)!r}, requested {want.get(k)!r}"
             for k in keys if have.get(k) != want.get(k)]
    if diffs:
        raise ValueError(
            f"the checkpoint (phase {state.get('phase')!r}, step {state.get('step')}) holds a "
            f"{what} of a different architecture: {'; '.join(diffs)} {advice}"
        )


def evaluated_weights(state: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint with the weights to evaluate or continue from: the EMA when it has one."""
    if state.get("generator_ema") is not None:
        return {**state, "generator": state["generator_ema"]}
    return dict(state)


def generator_from_checkpoint(state: Mapping[str, Any]) -> Generator:
    """The checkpoint's generator (its EMA weights when it has them), in eval mode."""
    generator = build_generator(checked_checkpoint(state)["generator_config"])
    load_generator_state(generator, evaluated_weights(state))
    return generator.eval()
