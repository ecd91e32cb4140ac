"""The name tables settings are checked against, each defined once, importing nothing.

``srgan_pipeline.params`` checks ``conf/`` against these tables before any node runs, and the
code that acts on a name reads the same table, so a name cannot be valid in one and unknown
in the other. Kept here, below both, so that the settings import no domain code and no torch
(tests/test_layers.py holds every module to that).
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------- data_prep

# How a source's images are reached (sources.py): a folder, an archive URL, scikit-image's wheel.
SOURCE_KINDS = ("url", "local", "builtin")

# Natural colour photographs inside scikit-image's wheel (skimage/data); the others are
# grayscale, synthetic or microscopy images that would teach the model little about photos.
BUILTIN_PHOTOS = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
    "immunohistochemistry": "ihc.png",
}

# --------------------------------------------------------------------------- train_gan

# What a phase's pixel_loss names (losses.pixel_loss) and its lr_schedule (training/schedule.py).
PIXEL_LOSSES = ("mse", "l1")
LR_SCHEDULES = ("constant", "cosine", "step")
# torch.compile modes a training phase may use (its `compile`; null: eager; auto: by device).
COMPILE_MODES = ("default", "reduce-overhead")

# reluX_Y = ReLU after the Y-th conv of block X, as an index into torchvision's vgg19().features
# (models/perceptual.py cuts the network there).
VGG19_LAYERS = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15, "relu3_4": 17,
    "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26,
    "relu5_1": 29, "relu5_2": 31, "relu5_3": 33, "relu5_4": 35,
}  # fmt: skip

# How training LR images are made from HR crops, and how a degraded evaluation set's LR are
# (degradations.py): the paper's MATLAB bicubic, or Real-ESRGAN's second-order real-world model.
DEGRADATIONS = ("bicubic", "real_world")
# The real-world model's blur kernels (Wang et al., Real-ESRGAN, ICCVW 2021, section 3.1) and
# the interpolations of its random resizes, as Real-ESRGAN names them.
BLUR_KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")

# --------------------------------------------------------------------------- devices

# The kinds of device a *.device setting names, each optionally with ":<index>", or "auto"
# (devices.pick_device).
DEVICE_TYPES = ("cpu", "cuda", "mps")

# --------------------------------------------------------------------------- inference

# Who runs the generator: PyTorch, or OpenVINO (an optional extra, CPU only): inference/upscaler.py
RUNTIMES = ("torch", "openvino")
# auto: bf16 where the device has bf16 units, else fp32 (devices.resolve_precision)
PRECISIONS = ("auto", "fp32", "bf16")

# --------------------------------------------------------------------------- models and scores

# The models of evaluation.models / upscale.model that are generators, and the catalog dataset
# (the train_gan output) each one is read from (checkpoints.generator_checkpoint).
GENERATOR_DATASETS = {"srresnet": "generator_pretrained", "srgan": "generator_gan"}
# What evaluation scores: bicubic interpolation, the baseline, and each trained generator.
MODELS = ("bicubic", *GENERATOR_DATASETS)
# evaluation's distortion scores (metrics.score), all greater-is-better.
METRICS = ("psnr_y", "ssim_y", "psnr_rgb")
# its perceptual scores, each when its evaluation block is set (evaluation.lpips, .niqe): LPIPS
# (lpips_metric.py), NIQE (niqe.py); both lower-is-better.
PERCEPTUAL_METRICS = ("lpips", "niqe")
# Which way each score improves: serving.registry.metric picks the champion by it.
METRIC_DIRECTIONS = {**dict.fromkeys(METRICS, "higher"),
                     **dict.fromkeys(PERCEPTUAL_METRICS, "lower")}
# LPIPS's backbones (lpips.LPIPS(net=...)): alex is the published default.
LPIPS_NETS = ("alex", "vgg")

# What the export pipeline writes (exports.py, docs/export.md), and the ONNX opsets it offers:
# chaiNNer's converter offers 14-17; torch's exporter needs CastLike (opset 15) for this graph.
EXPORT_FORMATS = ("safetensors", "onnx", "ncnn")
ONNX_OPSETS = (15, 16, 17)

# An MLflow model named by URI, which upscale.model accepts besides a GENERATOR_DATASETS name:
# models:/<name>@<alias>, models:/<name>/<version>, models:/m-<logged model id>, runs:/<id>/<path>
MODEL_URI = re.compile(r"models:/[^/@\s]+(@[\w-]+|/\d+)?|runs:/[0-9a-f]{32}/\S+")


def is_model_uri(value: object) -> bool:
    return isinstance(value, str) and MODEL_URI.fullmatch(value) is not None
