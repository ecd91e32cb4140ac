"""A trained generator in the files SR tools load: safetensors, ONNX, NCNN (docs/export.md).

Every format is written from the inference copy the project itself runs
(:func:`.inference.fusion.inference_model`: BatchNorm folded, tail conv before the last
shuffle), wrapped so that the file maps RGB in [0, 1] to RGB in [0, 1] (the generator's tanh
range [-1, 1] mapped inside the graph, then clipped as the project clips when it quantises).
Each file is written into a temporary folder beside its destination, checked there, and only
then moved into place (``os.replace``: atomic), so a failed export leaves no file behind:

* safetensors: the (unfolded) weights, reloaded into a fresh ``Generator`` of the config stored
  in its metadata, must upscale the photograph exactly as the original;
* ONNX: onnxruntime's output on a real photograph within :data:`TOLERANCE` grey levels of the
  project's own fp32 untiled upscale; the file's opset must be the one asked for;
* NCNN (pnnx converts, ncnn's Python runtime checks, in fp32): the same bound.

A check that fails raises :class:`ExportError` naming the format and the difference.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from srgan_pipeline.checkpoints import build_generator, describe_generator
from srgan_pipeline.imaging import imresize, mod_crop
from srgan_pipeline.inference import plan_inference
from srgan_pipeline.inference.fusion import inference_model
from srgan_pipeline.metrics import quantize
from srgan_pipeline.model_card import card_json
from srgan_pipeline.models import Generator
from srgan_pipeline.models.generator import hr_to_unit

__all__ = ["INSTALL_HINT", "TOLERANCE", "ExportError", "UnitRangeGenerator", "check_formats",
           "export_generator", "reference_upscale", "verification_photo"]

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install -e ".[export]"'
TOLERANCE = 1  # grey levels: the same bound the project holds its own tiled inference to
PACKAGES = {"safetensors": ("safetensors",), "onnx": ("onnx", "onnxscript", "onnxruntime"),
            "ncnn": ("pnnx", "ncnn")}
INPUT, OUTPUT = "input", "output"  # chaiNNer's and most ONNX SR models' names
NCNN_FP32 = ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage",
             "use_bf16_packed")


class ExportError(ValueError):
    """An export refused (a format's package missing, what a format cannot carry) or a file
    that failed its check; the message names the format."""


class UnitRangeGenerator(nn.Module):
    """The inference copy as the exported graph: RGB [0, 1] in, RGB [0, 1] out (NCHW)."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.model = inference_model(generator, device="cpu", channels_last=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # clipped: the input-skip generator has no tanh, and tools expect [0, 1]
        return hr_to_unit(self.model(x)).clamp(0, 1)


def check_formats(formats: Sequence[str], param: str = "export.formats") -> None:
    """Raise before any work when a format's packages are not installed."""
    missing = {f: [p for p in PACKAGES[f] if importlib.util.find_spec(p) is None] for f in formats}
    missing = {f: p for f, p in missing.items() if p}
    if missing:
        what = "; ".join(f"{f} needs {', '.join(p)}" for f, p in missing.items())
        raise ExportError(f"{param}: {what}, not installed: {INSTALL_HINT}, or leave the "
                          f"format{'s' if len(missing) > 1 else ''} out of {param}")


def verification_photo(path: str | None, scale: int) -> np.ndarray:
    """The LR image the exports are checked on: ``path`` as it is, or (None) the LR of
    scikit-image's ``chelsea`` photograph (in its wheel), made as data_prep makes LR."""
    from srgan_pipeline.imaging import load_rgb

    if path is not None:
        return load_rgb(path)
    from skimage import data as skimage_data

    return imresize(mod_crop(skimage_data.chelsea(), scale), 1 / scale)


def reference_upscale(generator: nn.Module, lr: np.ndarray) -> np.ndarray:
    """The project's own fp32 upscale of ``lr``, untiled (one tile the size of the image)."""
    plan = plan_inference("cpu", "fp32", max(lr.shape[:2]))
    return plan.prepare(generator).upscale(lr)


def export_generator(generator: Generator, card: dict[str, Any], *, formats: Sequence[str],
                     name: str, folder: Path, opset: int, photo: np.ndarray
                     ) -> dict[str, dict[str, Any]]:
    """Write and check each format in ``folder``: {format: {files, max_grey_level_diff}}."""
    check_formats(formats)
    folder.mkdir(parents=True, exist_ok=True)
    reference = reference_upscale(generator, photo)
    wrapped = UnitRangeGenerator(generator).eval()
    written: dict[str, dict[str, Any]] = {}
    for fmt in formats:
        with tempfile.TemporaryDirectory(dir=folder, prefix=f".{fmt}-") as tmp:
            files, diff = WRITERS[fmt](generator, wrapped, card, Path(tmp), name, opset, photo,
                                       reference)
            for file in files:  # each checked already: moved into place atomically
                _publish(file, folder / file.name)
        written[fmt] = {"files": [file.name for file in files], "max_grey_level_diff": diff}
        logger.info("Exported %s: %s (max %d grey level(s) from the project's fp32 upscale)",
                    fmt, ", ".join(written[fmt]["files"]), diff)
    card_file = folder / f"{name}.model_card.json"
    _write_atomic(card_file, card_json(card))
    return written


def _grey_levels(fmt: str, runtime: str, output: np.ndarray, reference: np.ndarray) -> int:
    """Max |difference| in grey levels of a runtime's NCHW [0, 1] output; raises over bound."""
    hr = quantize(np.transpose(np.asarray(output).reshape(3, *output.shape[-2:]), (1, 2, 0)))
    if hr.shape != reference.shape:
        raise ExportError(f"{fmt}: {runtime} returned an image of {hr.shape}, the project "
                          f"{reference.shape}: the file was not written")
    diff = int(np.abs(hr.astype(np.int16) - reference.astype(np.int16)).max())
    if diff > TOLERANCE:
        raise ExportError(f"{fmt}: {runtime}'s output differs from the project's fp32 untiled "
                          f"upscale by up to {diff} grey levels on the verification photograph "
                          f"(allowed {TOLERANCE}): the file was not written")
    return diff


def _metadata(generator: Generator, card: dict[str, Any]) -> dict[str, str]:
    return {"generator_config": json.dumps(describe_generator(generator), sort_keys=True),
            "model_card": card_json(card)}


def _safetensors(generator, wrapped, card, tmp, name, opset, photo, reference):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tmp / f"{name}.safetensors"
    weights = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    save_file(weights, str(path), metadata={"format": "pt", **_metadata(generator, card)})
    with safe_open(str(path), framework="pt") as file:
        config = json.loads(file.metadata()["generator_config"])
    rebuilt = build_generator(config)
    rebuilt.load_state_dict(load_file(str(path)))
    diff = int(np.abs(reference_upscale(rebuilt.eval(), photo).astype(np.int16)
                      - reference.astype(np.int16)).max())
    if diff:
        raise ExportError(f"safetensors: the reloaded weights upscale differently (up to {diff} "
                          "grey levels): the file was not written")
    return [path], diff


def _onnx(generator, wrapped, card, tmp, name, opset, photo, reference):
    import onnx
    import onnxruntime

    path = tmp / f"{name}.onnx"
    height, width = torch.export.Dim("height", min=1), torch.export.Dim("width", min=1)
    try:
        with warnings.catch_warnings(), _console_to(tmp / "torch.onnx.log"):
            warnings.simplefilter("ignore")  # the generator's shape check, seen by the tracer
            torch.onnx.export(wrapped, (torch.rand(1, 3, 32, 32),), str(path), dynamo=True,
                              opset_version=opset, input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_shapes={"x": {2: height, 3: width}},
                              external_data=False, verbose=False)
    except Exception as error:  # the exporter's own errors, of many types
        raise ExportError(f"onnx: torch's exporter failed ({type(error).__name__}: {error}); "
                          f"its log: {_tail(tmp / 'torch.onnx.log')}") from error
    model = onnx.load(str(path))
    got = {entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")}
    if got != {opset}:
        raise ExportError(f"onnx: torch wrote opset {sorted(got)}, not export.onnx_opset={opset}"
                          f" (its converter could not lower the graph): choose another opset "
                          f"in 14-17")
    onnx.helper.set_model_props(model, _metadata(generator, card))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _unit_nchw(photo)
    return [path], _grey_levels("onnx", "onnxruntime", session.run(None, {INPUT: x})[0],
                                reference)


def _ncnn(generator, wrapped, card, tmp, name, opset, photo, reference):
    import ncnn
    import pnnx

    stem = f"{name}-x{generator.scale}"  # Upscayl reads the scale from the name
    work = tmp / "pnnx"
    work.mkdir()
    log = tmp / "pnnx.log"
    try:
        with warnings.catch_warnings(), _console_to(log):  # pnnx prints every pass
            warnings.simplefilter("ignore")
            # two input sizes: pnnx then keeps height and width dynamic; fp16=False keeps the
            # weights in float32, so the check below is of the weights as trained
            pnnx.export(wrapped, str(work / "model.pt"), (torch.rand(1, 3, 32, 32),),
                        (torch.rand(1, 3, 48, 40),), fp16=False)
    except Exception as error:
        raise ExportError(f"ncnn: pnnx failed ({type(error).__name__}: {error}); its log: "
                          f"{_tail(log)}") from error
    if not (work / "model.ncnn.param").is_file():
        raise ExportError(f"ncnn: pnnx wrote no NCNN files; its log: {_tail(log)}")
    param, bin_ = tmp / f"{stem}.param", tmp / f"{stem}.bin"
    os.replace(work / "model.ncnn.param", param)
    os.replace(work / "model.ncnn.bin", bin_)
    net = ncnn.Net()
    for option in NCNN_FP32:  # the reference is fp32; Upscayl's GPU runs fp16 (docs)
        setattr(net.opt, option, False)
    net.load_param(str(param))
    net.load_model(str(bin_))
    array = np.ascontiguousarray(_unit_nchw(photo)[0])  # ncnn.Mat reads it: keep it alive
    extractor = net.create_extractor()
    extractor.input("in0", ncnn.Mat(array))
    status, out = extractor.extract("out0")
    if status != 0:
        raise ExportError(f"ncnn: the converted network did not run (status {status}): the "
                          "files were not written")
    return [bin_, param], _grey_levels("ncnn", "ncnn", np.array(out), reference)


def _unit_nchw(lr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(lr.transpose(2, 0, 1)[None].astype(np.float32) / 255)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n")
    _publish(tmp, path)


def _publish(file: Path, dest: Path) -> None:
    """``file`` at ``dest`` in one step, readable as any new file (safetensors writes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(file, 0o666 & ~umask)
    os.replace(file, dest)


@contextlib.contextmanager
def _console_to(log: Path) -> Iterator[None]:
    """This process's stdout and stderr (also a C++ library's) into ``log`` for a while."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log, "wb") as file:
            os.dup2(file.fileno(), 1)
            os.dup2(file.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _tail(log: Path, chars: int = 1500) -> str:
    text = log.read_text(errors="replace") if log.is_file() else ""
    return text[-chars:].strip() or "(empty)"


WRITERS: dict[str, Callable[..., tuple[list[Path], int]]] = {
    "safetensors": _safetensors, "onnx": _onnx, "ncnn": _ncnn}
