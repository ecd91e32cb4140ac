"""In-progress checkpoints that belong to exactly one run, so a resume never mixes runs.

While a phase trains, its state is written to ``<checkpoint_dir>/<phase>-<identity>.pt``. The
identity is a digest of everything that decides the weights the phase ends with:

* the phase's settings, less the run-control fields a resume may change and the ones that
  change speed, not the run (``training.config.RUN_CONTROL``; device and loader workers are not
  phase settings);
* the generator and critic architecture and the perceptual loss;
* the training data: the training store's index (with the sha256 of every image's pixels,
  recorded by data_prep as it writes them), tile table and file sizes: cheap to read, other
  pixels under the same names and sizes make another run, and data_prep rewrites an identical
  store from the same images, so re-running it does not orphan a checkpoint. A resume first
  checks the files against those digests (``TrainingStore.verify_content``);
* the perceptual loss: its layer, and its weights by content (a file's sha256, not its path);
* for phase 2, the weights of the pretrained generator it starts from: after phase 1 is
  resumed or retrained, an adversarial checkpoint that started from other weights is ignored.

Not part of it: ``train_gan.distributed`` (processes, machines, ``sync_batchnorm``). A resume
may continue under another number of processes: it starts at the sample of the patch stream
where the checkpoint stopped, and the global batch (per-process batch x processes) changes
from there on; under the same number it continues exactly.

``train_gan.resume=true`` continues only the file of the current identity. Files of other
identities are left alone and named in a warning that says which fields differ. A lock beside
the file (``filelock``: the OS drops it when its process dies, also on ``kill -9``) keeps two
live runs of one identity from writing one file; runs of different identities never share one.

:class:`ResumePoint` is a phase's in-progress checkpoint as the train_gan node uses it, created
once per phase (:meth:`ResumePoint.of`): its identity and path, its lock, the state to continue
from, and the one writer of the file (:class:`CheckpointWriter`). ``checkpoints.py`` says what a
checkpoint holds and rebuilds models from one; this module owns the in-progress file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from srgan_pipeline.checkpoints import evaluated_weights
from srgan_pipeline.datasets import TorchCheckpointDataset
from srgan_pipeline.params import PhaseParams, TrainGanParams
from srgan_pipeline.training.config import RUN_CONTROL
from srgan_pipeline.training_store import StoreError, TrainingStore

logger = logging.getLogger(__name__)



class ResumeError(RuntimeError):
    """An in-progress checkpoint cannot be used by this run; the message says why and what to do."""


def weights_fingerprint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Digest of a state dict's names, shapes, dtypes and values."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu()
        digest.update(f"{name}\0{tuple(tensor.shape)}\0{tensor.dtype}\n".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def run_identity(phase: str, config: Mapping[str, Any], **parts: Any) -> dict[str, Any]:
    """The fields that decide a phase's outcome, and their digest (``identity["digest"]``).

    ``config`` is the phase's settings as a dict; ``parts`` are the other inputs (architecture,
    perceptual loss, data and start fingerprints), each JSON-serialisable.
    """
    fields = {f"{phase}.{key}": value for key, value in sorted(config.items())
              if key not in RUN_CONTROL}
    fields |= {key: parts[key] for key in sorted(parts)}
    canonical = json.dumps(fields, sort_keys=True, default=_json_default)
    return {"digest": hashlib.sha256(canonical.encode()).hexdigest()[:16], "fields": fields}


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot fingerprint {type(value).__name__} {value!r}")


def checkpoint_path(checkpoint_dir: str | Path, phase: str, identity: Mapping[str, Any]) -> Path:
    return Path(checkpoint_dir) / f"{phase}-{identity['digest']}.pt"


@contextmanager
def owned(path: Path) -> Iterator[None]:
    """Hold the lock of an in-progress checkpoint for the duration of a phase."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{path}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ResumeError(
            f"another process is training this very run now (it holds {lock.lock_file}); "
            "wait for it to finish, or change a setting (e.g. the phase's seed) to train a "
            "different run beside it"
        ) from None
    try:
        yield
    finally:
        lock.release()


def load_own(path: Path, load: Callable[[Path], dict[str, Any]], phase: str,
             identity: Mapping[str, Any]) -> dict[str, Any] | None:
    """The in-progress state at ``path``, if it exists and belongs to this run.

    Checkpoints of other runs of the phase in the same folder are named in a warning with the
    fields in which they differ: the user then knows why nothing was resumed.
    """
    if path.exists():
        state = load(path)
        recorded = (state.get("run_identity") or {}).get("digest")
        if recorded != identity["digest"]:  # renamed by hand, or written by another version
            raise ResumeError(
                f"{path} records run identity {recorded!r}, not {identity['digest']!r} as its "
                "name says; move it away to start afresh"
            )
        return state
    others = sorted(p for p in path.parent.glob(f"{phase}*.pt") if p != path)
    for other in others:
        logger.warning("Not resuming from %s: %s", other, _difference(other, load, identity))
    if not others:
        logger.info("train_gan.resume=true but no %s checkpoint of this run exists (%s): "
                    "starting afresh", phase, path)
    return None


def _difference(path: Path, load: Callable[[Path], dict[str, Any]],
                identity: Mapping[str, Any]) -> str:
    try:
        theirs = (load(path).get("run_identity") or {}).get("fields")
    except Exception as error:  # a damaged file is named, never fatal: it is not ours
        return f"it cannot be read ({error})"
    if theirs is None:
        return "it was written by an earlier version that did not record which run it belongs to"
    ours = identity["fields"]
    changed = [_WHAT.get(key) or _short(f"{key}: {theirs.get(key)!r} there, {ours.get(key)!r} now")
               for key in sorted(set(theirs) | set(ours)) if theirs.get(key) != ours.get(key)]
    return ("it belongs to another run (" + "; ".join(changed) + "); this "
            "run starts afresh and leaves it alone: to continue it, set back what changed")


# Fields whose values are digests: what changed, in words, and how to get the old one back.
_WHAT = {
    "data": "data: the training store holds other pixels (data_prep was re-run on other images; "
            "re-run it on the images that run trained on to continue it)",
    "started_from": "started_from: phase 2 starts from other pretrained weights (phase 1 was "
                    "retrained or resumed since; --load-versions=generator_pretrained:<version> "
                    "pins the one it started from)",
}


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def phase_identity(phase: str, settings: TrainGanParams, store: TrainingStore,
                   scale: int | None = None, pretrained: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
    """The run identity of ``phase`` (:func:`run_identity`): its settings, the architecture,
    the perceptual loss, the training data and, for phase 2, the ``pretrained`` checkpoint it
    starts from (phase 1 needs the ``scale`` instead)."""
    cfg = getattr(settings, phase)
    parts = {"perceptual": _perceptual_identity(settings, cfg), "data": store.fingerprint()}
    if phase == "pretrain":
        parts["generator"] = {"scale": scale, **settings.generator.model_dump()}
    else:
        parts |= {
            "generator": pretrained["generator_config"], "critic": settings.critic.model_dump(),
            # Phase 2 belongs to the weights it starts from: a retrained or resumed phase 1
            # makes an older adversarial checkpoint another run's.
            "started_from": weights_fingerprint(evaluated_weights(pretrained)["generator"])}
    return run_identity(phase, cfg.model_dump(), **parts)


def _perceptual_identity(settings: TrainGanParams, cfg: PhaseParams) -> dict[str, Any] | None:
    """The perceptual loss a phase trains with, for its run identity (None when unused).

    A weights file enters by its content: another file at the same path is another run, the
    same file moved is not. ("imagenet" is torchvision's file, which it checks by its hash.)
    """
    if cfg.perceptual_weight <= 0:
        return None
    identity = settings.perceptual.model_dump()
    if identity["weights"] not in ("imagenet", "random"):  # a path: the loss has opened it
        with open(identity["weights"], "rb") as file:
            identity["weights"] = "sha256:" + hashlib.file_digest(file, "sha256").hexdigest()
    return identity


class ResumePoint:
    """A phase's in-progress checkpoint: whose it is, where it lies, its lock, its load and save.

    ``with point.held(on_resumed) as start:`` holds the lock (``holds_lock``: on the machine
    that writes the file) and gives this run's state to continue from when ``resume`` is true and
    one exists (None: start afresh); ``on_resumed(run id)`` then hears which tracking run wrote
    it. :meth:`writer` saves the file while the phase trains, :meth:`stamped` adds to a state
    which run it belongs to.
    """

    def __init__(self, phase: str, identity: dict[str, Any], checkpoint_dir: str | Path,
                 store: TrainingStore, *, resume: bool, holds_lock: bool = True):
        self.phase, self.identity, self.store = phase, identity, store
        self.path = checkpoint_path(checkpoint_dir, phase, identity)
        self.resume, self.holds_lock = resume, holds_lock

    @classmethod
    def of(cls, phase: str, settings: TrainGanParams, store: TrainingStore,
           scale: int | None = None, pretrained: Mapping[str, Any] | None = None
           ) -> ResumePoint:
        """The resume point of ``phase`` under ``settings`` (see :func:`phase_identity`).

        Node 0 of a data-parallel run holds the lock, as it writes the file: on a shared disk
        the other machines' runs of the same job must not be refused as a second live run.
        """
        return cls(phase, phase_identity(phase, settings, store, scale, pretrained),
                   settings.checkpoint_dir, store, resume=settings.resume,
                   holds_lock=settings.distributed.node_rank == 0)

    @contextmanager
    def held(self, on_resumed: Callable[[str | None], None] | None = None
             ) -> Iterator[dict[str, Any] | None]:
        """While inside, the lock is held; gives the state to continue from (None: afresh)."""
        with owned(self.path) if self.holds_lock else nullcontext():
            yield self._start(on_resumed)

    def _start(self, on_resumed: Callable[[str | None], None] | None) -> dict[str, Any] | None:
        """This run's in-progress state of the phase when ``train_gan.resume`` is true."""
        if not self.resume:
            if self.path.exists():
                logger.info("Starting %s afresh (train_gan.resume=false); %s will be "
                            "overwritten", self.phase, self.path)
            return None
        state = load_own(self.path, read_checkpoint, self.phase, self.identity)
        if state is not None:
            # The identity names the store's pixels by the digests data_prep recorded; a file
            # changed since (by hand, a bad disk) would be continued on as if it were that data.
            try:
                self.store.verify_content()
            except StoreError as error:
                raise ResumeError(f"not resuming {self.path}: {error}") from error
            logger.info("Resuming %s from step %d (%s)", self.phase, state["step"], self.path)
            if on_resumed is not None:
                on_resumed(state.get("mlflow_run_id"))
        return state

    def writer(self, mlflow_run_id: str | None) -> CheckpointWriter:
        return CheckpointWriter(self.path, self.identity, mlflow_run_id)

    def stamped(self, state: dict[str, Any], mlflow_run_id: str | None) -> dict[str, Any]:
        """``state`` with its provenance, as every checkpoint of the phase records it."""
        return {**state, **_provenance(self.identity, mlflow_run_id)}


def read_checkpoint(path: Path) -> dict[str, Any]:
    return TorchCheckpointDataset(filepath=str(path)).load()()


def _provenance(identity: Mapping[str, Any], mlflow_run_id: str | None) -> dict[str, Any]:
    """Which run a state belongs to: saved with every checkpoint of the phase."""
    return {"run_identity": identity, "mlflow_run_id": mlflow_run_id}


class CheckpointWriter:
    """Saves the in-progress checkpoint (a class, not a closure: it travels to rank 0)."""

    def __init__(self, path: Path, identity: Mapping[str, Any], mlflow_run_id: str | None):
        self.path, self.provenance = path, _provenance(identity, mlflow_run_id)

    def __call__(self, state: dict[str, Any]) -> None:
        # atomic: a kill keeps the last one
        try:
            TorchCheckpointDataset(filepath=str(self.path)).save({**state, **self.provenance})
        except Exception as error:
            if not _disk_full(error):
                raise
            raise OSError(errno.ENOSPC, f"step {state['step']}: the checkpoint was not written: "
                          f"{_disk_full(error).strerror}. Then continue with "
                          "train_gan.resume=true") from error


def _disk_full(error: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT behind ``error`` (Kedro wraps a dataset's errors), or None."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error
        error = error.__cause__
    return None
