"""Project hooks, registered in settings.py: parameters checked before any work, runs kept apart."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from kedro.framework.hooks import hook_impl
from kedro.io.core import AbstractVersionedDataset, Version

from srgan_pipeline import tracking
from srgan_pipeline.params import (
    PARAMETER_BLOCKS,
    ParameterError,
    blocks_read_by,
    rules_between_blocks,
    validate_params,
)
from srgan_pipeline.training import stop

logger = logging.getLogger(__name__)


class ValidateParametersHook:
    """Checks the blocks the nodes of this run read (all phases of all pipelines in it), and
    that every top-level key is a known block. Blocks no node of the run reads are left alone,
    so an unfinished upscale setting does not stop a training run.

    ``tryfirst``: before kedro-mlflow's hook opens an MLflow run for a run that cannot start.
    Kedro's own typed-parameter validation (node arguments annotated with a model) is not used:
    it checks one ``params:`` input at a time, so keys no node reads whole (``data_prep``'s node
    inputs are ``params:data_prep.tiles`` and the like) and rules relative to ``scale`` have no
    place; it hands nodes model instances instead of the dicts kedro-mlflow flattens into one
    MLflow parameter per key; and its messages are pydantic's, not parameter paths.
    """

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        def value(name: str) -> Any:  # the dataset itself: catalog.load would log every block
            return catalog[name].load()

        errors, validated = [], {}
        if "parameters" in catalog:  # a misspelt block (--params=upscal.x=...) is read by none
            unknown = sorted(set(value("parameters")) - set(PARAMETER_BLOCKS))
            errors += [f"{name}: unknown parameter block; valid blocks: "
                       f"{', '.join(PARAMETER_BLOCKS)}" for name in unknown]
        scale = None
        if "params:scale" in catalog:  # first: other blocks' rules are relative to it
            try:
                scale = validated["scale"] = validate_params("scale", value("params:scale"))
            except ParameterError as error:
                errors.append(str(error))
        blocks = [b for b in blocks_read_by(pipeline) if f"params:{b}" in catalog]
        for block in blocks:
            if block == "scale":
                continue
            try:
                validated[block] = validate_params(block, value(f"params:{block}"), scale=scale)
            except ParameterError as error:
                errors.append(str(error))
        if not errors:  # each block valid: then the rules that tie two of them
            errors += rules_between_blocks(validated)
        if not errors and "upscaled_images" in pipeline.all_outputs():
            errors += _upscale_folders_overlap(value("params:upscale"), catalog["upscaled_images"])
        if errors:
            raise ParameterError("Invalid parameters (nothing was run):\n" + "\n".join(errors))
        logger.info("Parameters valid: %s", ", ".join(blocks))
        if "evaluation_per_image" in pipeline.all_outputs() and "evaluation" in validated:
            _fetch_perceptual_weights(validated["evaluation"])


def _fetch_perceptual_weights(evaluation: Any) -> None:
    """LPIPS's backbone and NIQE's model read or downloaded before the first node: offline, a
    full run stops here, naming the URL and the path, rather than after hours of training."""
    if evaluation.lpips and evaluation.lpips.weights == "imagenet":
        from srgan_pipeline.lpips_metric import fetch_backbone  # torch: only when needed

        fetch_backbone(evaluation.lpips.net)
    if evaluation.niqe:
        from srgan_pipeline.niqe import load_pristine_model

        load_pristine_model(evaluation.niqe.params)


def _upscale_folders_overlap(upscale: dict[str, Any], output_dataset: Any) -> list[str]:
    """``upscale.input_dir`` equal to, inside or holding the output folder, as an error.

    Outputs keep the inputs' names, so they would overwrite the inputs (``photo.png``), or be
    read as inputs by the next run. Relative paths are resolved as the node resolves them.
    """
    inputs = Path(upscale["input_dir"]).resolve()
    output = Path(output_dataset._path).resolve()  # PartitionedDataset has no public path
    if inputs == output or inputs in output.parents or output in inputs.parents:
        return [f"upscale.input_dir: folder {inputs} overlaps the output folder {output} "
                "(upscaled_images in the catalog): outputs would overwrite the inputs. Put the "
                "images to upscale in another folder"]
    return []


class DataPrepLockHook:
    """One data_prep at a time per project: a second is refused before it writes anything.

    Two at once deleted each other's temporary store (one died with FileNotFoundError, a
    ``train_store.old-*`` folder left behind) and wrote the same HR images. The lock is a
    ``filelock`` beside the store, as train_gan's checkpoint lock: the OS drops it when its
    process dies, also on ``kill -9``. Registered before ValidateParametersHook in settings.py,
    so it runs after it (pluggy calls later registrations first): invalid parameters are
    reported as such, and no later hook can fail between the lock and the run, which is where
    ``on_pipeline_error`` (the release) would not be called.
    """

    def __init__(self) -> None:
        self._lock: FileLock | None = None

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        if "train_store" not in pipeline.all_outputs():
            return
        lock = FileLock(f"{catalog['train_store']._filepath}.lock")  # no public path
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RuntimeError(
                f"another data_prep run is writing this project's data now (it holds "
                f"{lock.lock_file}); wait for it to finish and run again (nothing was written)"
            ) from None
        self._lock = lock

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._release()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class MlflowSetupLockHook:
    """kedro-mlflow creates the tracking store and experiment as the context is created; in a
    fresh project that runs MLflow's database migrations, and two runs starting at once raced
    (``table _alembic_tmp_experiments already exists``). A wrapper around every
    ``after_context_created`` serialises that step on ``<project>/mlflow.db.lock``: a second
    run waits for the first one's setup (seconds), then finds the tables made."""

    @hook_impl(hookwrapper=True)
    def after_context_created(self, context):
        lock = FileLock(Path(context.project_path) / "mlflow.db.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            logger.info("Waiting for another run's MLflow setup to finish (%s)", lock.lock_file)
            lock.acquire()
        try:
            yield
        finally:
            lock.release()


class UnwritableOutputError(RuntimeError):
    """An output folder of the run cannot be written; raised before any node runs."""


class WritableOutputsHook:
    """Refuses a run whose output folders cannot be written (read-only disk, no permission),
    before any node runs and before kedro-mlflow opens a run: otherwise training would run
    for hours and fail at its first save. Each folder is probed with a temporary file, which
    sees what the kernel allows (root, read-only mounts, ACLs), not the permission bits.
    """

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        folders: dict[Path, list[str]] = {}
        for name, folder in _output_folders(pipeline, catalog):
            folders.setdefault(folder, []).append(name)
        refused = [f"{folder} ({', '.join(names)}): {reason}" for folder, names
                   in folders.items() if (reason := _not_writable(folder))]
        if refused:
            raise UnwritableOutputError(
                "Output folders that cannot be written (nothing was run):\n"
                + "\n".join(refused) + "\nMake them writable, or point the datasets elsewhere "
                "(conf/local/catalog.yml; train_gan.checkpoint_dir for checkpoints)")


def _output_folders(pipeline, catalog):
    """(name, folder) of each local file output of ``pipeline``, and the training
    checkpoints' folder when the run trains."""
    for name in sorted(pipeline.all_outputs()):
        dataset = catalog[name] if name in catalog else None
        path = getattr(dataset, "_filepath", None) or getattr(dataset, "_path", None)
        if path is not None and getattr(dataset, "_protocol", "file") == "file":
            yield name, Path(str(path))
    if "train_gan" in blocks_read_by(pipeline) and "params:train_gan" in catalog:
        yield "train_gan.checkpoint_dir", Path(validate_params(
            "train_gan", catalog["params:train_gan"].load()).checkpoint_dir)


def _not_writable(path: Path) -> str | None:
    """Why no file can be made where ``path`` is or will be (None: one can)."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as error:
        return f"{error.strerror} (in {folder})"


class RunIsolationHooks:
    """Keeps runs in one project apart: each reads back its own outputs, owns its MLflow run.

    * Versioned datasets this run produces are read back at the version this run saves, not
      the latest on disk: with Kedro's default (latest), evaluation in a full ``kedro run`` could
      score the generator another run saved a moment later. Inputs this run does not produce
      stay as Kedro resolves them (latest, or ``--load-versions``).
    * The MLflow run kedro-mlflow opened is claimed by this process, and runs left RUNNING by
      killed processes are closed (tracking.py). ``trylast``: kedro-mlflow's own
      ``before_pipeline_run`` must have opened the run first.
    """

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        pin_own_outputs(pipeline, catalog)
        if tracking.active():
            tracking.claim_run()
            tracking.close_orphaned_runs()


class StopOnSignalHooks:
    """SIGTERM and SIGINT (docker stop, Kubernetes, Slurm, Ctrl-C) end a run as KILLED, with
    the signal's name in the tag ``srgan.stopped_by_signal``: training stops at its next step
    boundary with a checkpoint written there, any other node at once (training/stop.py).

    ``trylast``: the run kedro-mlflow opened is known; on error, after kedro-mlflow's hook has
    ended it FAILED (it fails itself when it finds no active run to end).
    """

    def __init__(self) -> None:
        self._run: str | None = None

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        stop.install()
        self._run = tracking.run_id()

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        stop.uninstall()

    @hook_impl(trylast=True)
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline: Any,
                          catalog: Any) -> None:
        stop.uninstall()
        if isinstance(error, stop.Interrupted) and self._run is not None:
            tracking.end_killed(self._run, error.signal_name, str(error))


def pin_own_outputs(pipeline: Any, catalog: Any) -> list[str]:
    """Pin the load version of each versioned output of ``pipeline`` to its save version."""
    pinned = []
    for name in sorted(pipeline.all_outputs()):
        if name not in catalog:
            continue
        dataset = catalog[name]
        # Kedro keeps the version in a private field; _copy is its own way to change one.
        version = getattr(dataset, "_version", None)
        if isinstance(dataset, AbstractVersionedDataset) and version and version.load is None:
            save = dataset.resolve_save_version()
            catalog[name] = dataset._copy(_version=Version(save, save))
            pinned.append(name)
    return pinned
