"""How well a training run used its accelerator: model FLOPs, MFU and peak GPU memory.

MFU (model FLOPs utilisation) counts the FLOPs the model *needs* per real token (padding and activation
recomputation left out) against the accelerator's dense bf16/fp16 peak, the way PaLM and most training
reports define it:

* every linear layer costs ``2 * in * out`` FLOPs per token forward and as much again for the gradient of
  its input; a trainable one costs ``2 * in * out`` more for the gradient of its weight (so LoRA, whose base
  weights are frozen, is charged ``4 * in * out`` for them, full fine-tuning ``6 * in * out``);
* attention scores and the weighted sum cost ``12 * layers * width * context`` per token forward and backward.

Only single-stream models (encoders, decoders) get an MFU: an encoder-decoder's token count mixes two
streams of different lengths.
"""

from __future__ import annotations

from typing import Any

import torch

# Dense (no sparsity) bf16 peak TFLOP/s per GPU, from the vendors' data sheets; the first name found in
# torch.cuda.get_device_name() wins, so longer names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM ("H100 80GB HBM3")
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
)


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named like ``torch.cuda.get_device_name()``; None when unknown."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in device_name:
            return tflops
    return None


def training_flops_per_token(model: torch.nn.Module, context: float) -> float | None:
    """Model FLOPs of one training step per real token (forward and backward) at mean length ``context``.

    None for encoder-decoder models (see the module docstring) and models without ``num_hidden_layers`` /
    ``hidden_size`` in their config.
    """
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return None
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers, width = getattr(text_config, "num_hidden_layers", None), getattr(text_config, "hidden_size", None)
    if not layers or not width:
        return None
    flops = 12.0 * layers * width * context
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            weights = module.in_features * module.out_features
            flops += (6.0 if module.weight.requires_grad else 4.0) * weights
    return flops


def gpu_training_figures(model: Any, device: torch.device, tokens: int, samples: int, seconds: float,
                         processes: int, earlier_peak_bytes: int = 0) -> dict[str, float]:
    """Peak GPU memory of this process and, where the GPU's peak is known, the run's MFU.

    ``tokens``/``samples``: real tokens and rows trained on by all ``processes`` in ``seconds``;
    ``earlier_peak_bytes``: the peak of the processes a resumed run ran in before. Empty off CUDA.
    """
    if device.type != "cuda" or not torch.cuda.is_available():
        return {}
    peak_bytes = max(earlier_peak_bytes, torch.cuda.max_memory_allocated(device))
    figures: dict[str, float] = {"peak_gpu_memory_gib": round(peak_bytes / 2**30, 2)}
    per_token = training_flops_per_token(model, tokens / max(samples, 1)) if tokens else None
    if per_token is None or seconds <= 0:
        return figures
    achieved = per_token * tokens / seconds / processes  # FLOP/s per GPU
    figures["model_tflops_per_gpu"] = round(achieved / 1e12, 2)
    peak = peak_tflops(torch.cuda.get_device_name(device))
    if peak is not None:
        figures["mfu"] = round(achieved / (peak * 1e12), 4)
    return figures
