"""In-progress checkpoints that belong to exactly one run, so a resume never mixes runs.

While a phase trains, its state is written to ``<checkpoint_dir>/<phase>-<identity>.pt``. The
identity is a digest of everything that decides the weights the phase ends with:

* the phase's settings, less the run-control fields a resume may change (``RUN_CONTROL``) and
  the ones that change speed, not the run (memory format, bf16, device, loader workers);
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
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

logger = logging.getLogger(__name__)

# TrainConfig fields that may differ between a run and its resume: how long, how often to log
# and save; and the ones that change the speed of a step but not which run it is.
RUN_CONTROL = frozenset({"iterations", "max_minutes", "log_every", "checkpoint_every",
                         "channels_last", "amp_bf16"})


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

    ``config`` is the phase's TrainConfig as a dict; ``parts`` are the other inputs (architecture,
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
