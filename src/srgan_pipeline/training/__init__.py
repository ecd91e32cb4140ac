"""SRGAN training in plain PyTorch: phase 1 (pretrain) and phase 2 (WGAN-GP).

No Kedro and no MLflow in here: the Kedro node builds the models and hands a ``job.Job`` to
``job.train`` with two callbacks, ``on_log(step, metrics)`` (one batched MLflow call per
window) and ``on_checkpoint(state)`` (saves the state dict). A state dict holds only tensors,
numbers, strings, lists and dicts, so ``torch.load(path, weights_only=True)`` reads it back and
``start=state`` resumes from it.

Where things are:

* ``job.py``: a phase as a job: the training device, the batches from the training store, one
  process or data-parallel ranks (``distributed.py``: the processes and their collectives);
* ``loop.py``: the scaffold both phases share (resume, learning-rate schedule, logging,
  checkpoints, time budget, stop); ``pretrain.py`` and ``adversarial.py``: each phase's
  per-step maths only (BasicSR's ``optimize_parameters`` idea, without its registries);
* ``state.py``: checkpoint snapshots, RNG and optimiser restore, finiteness checks;
* ``feed.py``: batches to the device, and the time spent waiting for them;
* ``meter.py``: per-window loss averages, the progress bar and the log line;
* ``schedule.py``: the learning-rate multiplier of a step;
* ``config.py``: the phase settings (``params.PretrainParams`` / ``AdversarialParams``).

Value ranges follow models/generator.py: LR and HR batches come out of the data in [0, 1];
the generator returns [-1, 1]; ``hr_to_unit`` / ``unit_to_hr`` are the only conversions.

Reproducibility: the patch stream is a function of (seed, sample number) (patches.py).
Together with the saved model, optimiser and torch RNG states, a resumed run on CPU ends
with the same weights as an uninterrupted one.
"""

from srgan_pipeline.training.adversarial import train_adversarial
from srgan_pipeline.training.config import phase_config
from srgan_pipeline.training.pretrain import pretrain
from srgan_pipeline.training.schedule import lr_factor
from srgan_pipeline.training.state import NonFiniteLossError

__all__ = ["NonFiniteLossError", "lr_factor", "phase_config", "pretrain", "train_adversarial"]
