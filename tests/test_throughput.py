"""MFU bookkeeping: model FLOPs per token for full and LoRA training, GPU peaks by name."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, MarianConfig, MarianMTModel

from nlpkit.throughput import gpu_training_figures, peak_tflops, training_flops_per_token


def _tiny_bert() -> BertForSequenceClassification:
    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=3)
    return BertForSequenceClassification(config)


def test_full_training_costs_six_flops_per_linear_weight_plus_attention():
    model = _tiny_bert()
    # per layer: q, k, v, attention output (16x16 each), FFN in 16x32 and out 32x16; pooler 16x16; head 16x3
    linear = 2 * (4 * 16 * 16 + 2 * 16 * 32) + 16 * 16 + 16 * 3
    assert training_flops_per_token(model, context=10) == 6 * linear + 12 * 2 * 16 * 10


def test_frozen_weights_cost_no_weight_gradient():
    model = _tiny_bert()
    full = training_flops_per_token(model, context=10)
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("classifier")
    frozen = training_flops_per_token(model, context=10)
    head = 16 * 3
    linear = 2 * (4 * 16 * 16 + 2 * 16 * 32) + 16 * 16
    assert full - frozen == 2 * linear
    assert frozen == 4 * linear + 6 * head + 12 * 2 * 16 * 10


def test_encoder_decoder_models_get_no_mfu():
    config = MarianConfig(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                          decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, pad_token_id=0,
                          decoder_start_token_id=0)
    assert training_flops_per_token(MarianMTModel(config), context=10) is None


@pytest.mark.parametrize(("name", "tflops"), [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
                                              ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0),
                                              ("NVIDIA L4", 121.0), ("NVIDIA L40S", 362.0),
                                              ("Some Future GPU", None)])
def test_gpu_peaks_by_device_name(name, tflops):
    assert peak_tflops(name) == tflops


def test_no_gpu_figures_off_cuda():
    assert gpu_training_figures(_tiny_bert(), torch.device("cpu"), tokens=100, samples=10, seconds=1.0,
                                processes=1) == {}
