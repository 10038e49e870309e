"""The arithmetic floor of an image: its MACs over the machine's sustained multiply-accumulate rate (issue #29).

``image_macs``: what one image costs in multiply-accumulates — the text encoders once per prompt (twice with
classifier-free guidance), the UNet once per step on a batch of one or two, the VAE decoder once — counted by
``torch.utils.flop_counter`` on shapes only (:func:`edgeldm.inventory.count_macs`: meta weights, nothing runs).

``throughput``: the machine's sustained rate on the two kernels an SD image is made of, through ONNX Runtime's CPU
provider with the threads given: a MatMul of SD's attention / feed-forward shape and a 3x3 convolution of its
ResNet shape, each timed after warm-up; the larger rate is the floor's (the best the machine does on that work). An INT8
MatMul (``MatMulInteger``) gives the rate an INT8 graph's floor should use.

``floor_ratio = measured seconds / (image MACs / best MAC rate)``: 1.0 is the machine's limit, 2.0 twice it.
"""

from __future__ import annotations

import time

import numpy as np

#: the probe's shapes: SD 1.5 at 512 px, first stage (4 096 tokens x 320 channels; 64 x 64 x 320 feature map)
MATMUL_SHAPE = (4096, 320, 1280)  # (M, K, N): the feed-forward's first projection
CONV_SHAPE = (1, 320, 64, 64, 320)  # (N, C, H, W, out channels), 3x3, padding 1


def image_macs(source, *, height: int | None = None, width: int | None = None, steps: int, guidance: bool) -> dict:
    """MACs of one image of ``source`` (zoo name or diffusers folder): per component and in total."""
    import torch

    from edgeldm.components import vae_scale_factor
    from edgeldm.exporters.torch_modules import VaeDecoderModule
    from edgeldm.inventory import count_macs, unet_example_inputs
    from edgeldm.loading import resolve_source
    from edgeldm.zoo import get_zoo_entry
    from edgeldm.zoo.build import build_components

    kind, path = resolve_source(source)
    if kind == "preset":  # shapes only: meta weights
        components = build_components(get_zoo_entry(source).folder, device="meta")
    else:  # the real loading code: a pruned UNet's plan replayed, a tiny VAE as it is (counted, not run)
        from edgeldm.families import FAMILIES
        from edgeldm.loading import load_pipeline

        components = load_pipeline(str(path), families=tuple(FAMILIES)).components
    unet, vae = components["unet"], components["vae"]
    # every text encoder the prompt goes through (SDXL: two, the second the larger)
    encoders = [m for name, m in components.items() if name.startswith("text_encoder") and m is not None]
    factor = vae_scale_factor(vae.config)
    height = height or unet.config.sample_size * factor
    width = width or unet.config.sample_size * factor
    seq = components["tokenizer"].model_max_length
    batch = 2 if guidance else 1
    unet_step = count_macs(unet, unet_example_inputs(unet, height, width, vae_scale_factor=factor,
                                                     sequence_length=seq, batch=batch)).total
    ids = torch.zeros(batch, seq, dtype=torch.long)
    text = sum(count_macs(encoder, {"input_ids": ids}).total for encoder in encoders)
    latents = torch.zeros(1, vae.config.latent_channels, height // factor, width // factor)
    decode = count_macs(VaeDecoderModule(vae), {"latent_sample": latents}).total
    return {"height": height, "width": width, "steps": steps, "unet_batch": batch, "text_encoder": text,
            "unet_step": unet_step, "unet": unet_step * steps, "vae_decoder": decode,
            "total": text + unet_step * steps + decode}


def throughput(threads: int = 0, *, seconds: float = 2.0) -> dict:
    """Sustained MACs per second of ONNX Runtime's CPU kernels on a MatMul and a convolution of SD's shapes."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    m, k, n = MATMUL_SHAPE
    b, c, h, w, o = CONV_SHAPE
    probes = {
        "matmul": (helper.make_node("MatMul", ["x", "w"], ["y"]), (m, k), rng.standard_normal((k, n), np.float32),
                   m * k * n),
        "conv3x3": (helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]), (b, c, h, w),
                    rng.standard_normal((o, c, 3, 3), np.float32), b * o * h * w * c * 9),
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    result = {"threads": threads, "provider": "CPUExecutionProvider"}
    for name, (node, x_shape, weight, macs) in probes.items():
        graph = helper.make_graph([node], name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                  [numpy_helper.from_array(weight, "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        result[f"{name}_macs_per_s"] = macs / _median_run(session, rng.standard_normal(x_shape, np.float32), seconds)
    result["best_macs_per_s"] = max(result["matmul_macs_per_s"], result["conv3x3_macs_per_s"])
    # INT8 graphs run integer kernels (VNNI / AMX where the CPU has them): their floor is this rate, not fp32's
    int8 = helper.make_graph(
        [helper.make_node("MatMulInteger", ["x", "w"], ["y"])], "matmul_int8",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, (m, k))],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        [numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "w")])
    session = ort.InferenceSession(helper.make_model(int8, opset_imports=[helper.make_opsetid("", 17)])
                                   .SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = rng.integers(0, 256, (m, k), dtype=np.uint8)
    result["matmul_int8_macs_per_s"] = m * k * n / _median_run(session, x, seconds)
    return result


def _median_run(session, x, seconds: float) -> float:
    session.run(None, {"x": x})  # warm-up: allocations, kernel selection
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def floor_ratio(measured_s: float, macs: float, macs_per_s: float) -> float:
    """Measured time over the floor time (``macs / macs_per_s``): 1.0 is the machine's limit."""
    if measured_s <= 0 or macs <= 0 or macs_per_s <= 0:
        raise ValueError("floor_ratio needs positive time, MACs and rate")
    return measured_s / (macs / macs_per_s)


def main(argv: list[str] | None = None) -> int:
    """``python -m edgeldm.benchmarks.floor MODEL [--size PX] [--steps N] [--guidance] [--threads T]``: one JSON
    line with the image's MACs, the machine's rates and the floor time."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m edgeldm.benchmarks.floor", description=main.__doc__.split(":", 1)[0])
    p.add_argument("model", help="zoo preset or diffusers folder")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default: the model's)")
    p.add_argument("--steps", type=int, default=4, help="UNet steps per image (default 4)")
    p.add_argument("--guidance", action="store_true", help="classifier-free guidance: UNet batch 2")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads for the probe (0: all cores)")
    args = p.parse_args(argv)
    macs = image_macs(args.model, height=args.size, width=args.size, steps=args.steps, guidance=args.guidance)
    rate = throughput(args.threads)
    print(json.dumps({"macs": macs, "throughput": rate, "floor_s": macs["total"] / rate["best_macs_per_s"]}))
    return 0


if __name__ == "__main__":
    from ..entry import run_guarded

    raise SystemExit(run_guarded(main, tracebacks=True))
