"""The settings of a training phase: ``params.PretrainParams`` or ``params.AdversarialParams``.

The loops read the validated, frozen parameter models directly, so a setting has one name and
one rule from conf/ to the loop, and its default lives in conf/base only. ``phase_config``
builds one from conf/base with overrides, for code that runs the loops outside ``kedro run``
(tests, benchmarks, notebooks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from srgan_pipeline.params import AdversarialParams, PretrainParams, validate_params

PhaseConfig = PretrainParams | AdversarialParams

PHASES = {"pretrain": PretrainParams, "adversarial": AdversarialParams}

# Phase settings that may differ between a run and its resume (resume.run_identity leaves them
# out): how long, how often to log and save; and the ones that change the speed of a step but
# not which run it is.
RUN_CONTROL = frozenset({"iterations", "max_minutes", "min_iterations", "log_every",
                         "checkpoint_every", "channels_last", "amp_bf16", "compile"})

CONF_BASE = Path(__file__).resolve().parents[3] / "conf" / "base"


def phase_config(phase: str, **overrides: Any) -> PhaseConfig:
    """conf/base's ``train_gan.<phase>`` with ``overrides``, validated as ``kedro run`` does."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {list(PHASES)}, got {phase!r}")
    path = CONF_BASE / "parameters_train_gan.yml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: phase_config reads the project's conf/base "
                                "(run from a checkout of the project)")
    base = OmegaConf.to_container(OmegaConf.load(path))["train_gan"][phase]
    return validate_params(f"train_gan.{phase}", {**base, **overrides}, schema=PHASES[phase])
