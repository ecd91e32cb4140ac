"""Each export of a trained generator against the project's own fp32 untiled upscale.

Writes every format (exports.export_generator: the export pipeline's own code, which fails
beyond 1 grey level) into a temp folder from a train_gan checkpoint, on the LR of
scikit-image's chelsea photograph (the export's default check), and prints per format the
largest difference in grey levels and the time to write and check it. It also runs the NCNN
files with ncnn's default options (fp16 storage and arithmetic where the CPU has them, as
Upscayl's GPU runs them), which the export does not check: how far that drifts.

    python benchmarks/export_check.py \
        data/06_models/generator_pretrained.pt/<version>/generator_pretrained.pt
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from srgan_pipeline import exports
from srgan_pipeline.checkpoints import generator_from_checkpoint
from srgan_pipeline.model_card import model_card
from srgan_pipeline.serving.model import slim_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    args = parser.parse_args()
    state = slim_checkpoint(torch.load(args.checkpoint, map_location="cpu", weights_only=True))
    generator = generator_from_checkpoint(state)
    card = model_card(state, "generator")
    photo = exports.verification_photo(None, generator.scale)
    print(f"generator {state['generator_config']}, phase {state['phase']}, step "
          f"{state['step']}; photograph {photo.shape[1]}x{photo.shape[0]} LR")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in exports.PACKAGES:
            start = time.perf_counter()
            written = exports.export_generator(generator, card, formats=(fmt,), name="check",
                                               folder=Path(tmp), opset=17, photo=photo)
            print(f"{fmt:12s} max {written[fmt]['max_grey_level_diff']} grey level(s), "
                  f"{time.perf_counter() - start:.1f} s: {', '.join(written[fmt]['files'])}")
        print(f"ncnn default options (fp16 where the CPU has it): max "
              f"{ncnn_default(Path(tmp), photo, exports.reference_upscale(generator, photo))} "
              f"grey level(s)")


def ncnn_default(folder: Path, photo: np.ndarray, reference: np.ndarray) -> int:
    import ncnn

    net = ncnn.Net()
    net.load_param(str(folder / "check-x4.param"))
    net.load_model(str(folder / "check-x4.bin"))
    array = np.ascontiguousarray(photo.transpose(2, 0, 1).astype(np.float32) / 255)
    extractor = net.create_extractor()
    extractor.input("in0", ncnn.Mat(array))
    _, out = extractor.extract("out0")
    hr = np.floor(np.clip(np.array(out).transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.int16)
    return int(np.abs(hr - reference.astype(np.int16)).max())


if __name__ == "__main__":
    main()
