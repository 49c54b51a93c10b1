"""Peak GPU memory of full, LoRA and QLoRA fine-tuning of a >= 1B-parameter causal LM, through nlpkit's loop.

    python benchmarks/gpu_memory.py                          # SmolLM2-1.7B's shape, 20 updates per recipe
    python benchmarks/gpu_memory.py --shape tiny --device cpu --recipes full-fp32,lora   # a quick check
    python benchmarks/gpu_memory.py --base <tiny causal LM folder> --data plays.jsonl --shape tiny --device cpu \
        --recipes full-fp32 --steps 2 --block-size 32        # no catalog download

The catalog holds no model of a billion parameters, and peak memory depends on shapes, not on weight values:
so the model is **SmolLM2-1.7B's architecture** (24 layers, width 2,048, feed-forward 8,192, 32 heads, the
49,152-token vocabulary, tied embeddings: 1.71B parameters) built from the config and tokenizer of the
catalog's ``smollm2-135m`` (``--base``; its weights are never read), with random bf16 weights saved once
into ``--out``/model. Each recipe then fine-tunes it in a fresh process (``accelerate launch --mixed_precision
bf16 tasks/generation.py``: a clean peak for each) on the catalog's Shakespeare, the same batches for all:

| recipe | weights | trains |
|---|---|---|
| ``full-fp32`` | fp32 master weights, bf16 autocast (the accelerate config's mixed precision) | every weight, AdamW |
| ``full-bf16`` | bf16 weights (``model.dtype=bfloat16``) | every weight, AdamW |
| ``lora`` | bf16 base (``model.dtype=bfloat16``) | rank-16 adapters on every linear layer |
| ``qlora`` | 4-bit NF4 base (``model.quantization=4bit``, bitsandbytes) | the same adapters |

Peak memory = ``torch.cuda.max_memory_allocated`` of the training process (the report's
``peak_gpu_memory_gib``, which covers loading, the before-training evaluation and the updates). Speed and MFU
come from the same reports (training time only). The runs stop after ``--steps`` updates
(``train.stop_after_steps``), so nothing is saved.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHAPES = {
    # SmolLM2-1.7B (HuggingFaceTB/SmolLM2-1.7B config.json)
    "smollm2-1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                         num_key_value_heads=32, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, tie_word_embeddings=True),
}

RECIPES = {
    "full-fp32": ["model.dtype=float32"],
    "full-bf16": ["model.dtype=bfloat16"],
    "lora": ["model.dtype=bfloat16", "train.lora=true", "lora.r=16", "lora.alpha=32",
             "lora.target_modules=[all-linear]"],
    "qlora": ["model.quantization=4bit", "train.lora=true", "lora.r=16", "lora.alpha=32",
              "lora.target_modules=[all-linear]"],
}


def build_model(base: str, shape: str, folder: Path) -> int:
    """Save a randomly initialised model of ``shape`` with ``base``'s config and tokenizer; its parameter count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from nlpkit.modeling import resolve_model

    base_dir = resolve_model(base)
    config = AutoConfig.from_pretrained(base_dir)
    for key, value in SHAPES[shape].items():
        setattr(config, key, value)
    config.head_dim = config.hidden_size // config.num_attention_heads
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    count = sum(p.numel() for p in model.parameters())
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    (folder / "parameters.txt").write_text(str(count))
    return count


def run_recipe(recipe: str, model_dir: Path, out: Path, args: argparse.Namespace) -> dict:
    """One fine-tuning run in its own process; the training section of its report."""
    run_dir = out / recipe
    shutil.rmtree(run_dir, ignore_errors=True)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--dynamo_backend", "no"]
    launch += ["--cpu", "--mixed_precision", "no"] if args.device == "cpu" else ["--mixed_precision", "bf16"]
    overrides = [f"model={model_dir}", f"output_dir={run_dir}", f"data.block_size={args.block_size}",
                 f"train.batch_size={args.batch_size}", "train.grad_accum=1", f"train.max_steps={args.steps * 10}",
                 f"train.stop_after_steps={args.steps}", "train.eval_every=100000", "train.save_every=100000",
                 "train.lr=1e-4", "train.warmup_ratio=0", "train.log_every=1", "data.max_eval_tokens=1024",
                 "generate.max_new_tokens=8", "sample_prompts=[ROMEO.]", "trackers=[]",
                 *([f"data.source={args.data}"] if args.data else []),
                 f"train.gradient_checkpointing={str(args.gradient_checkpointing).lower()}", *RECIPES[recipe]]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([*launch, str(ROOT / "tasks" / "generation.py"), *overrides], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-2000:]}
    report = json.loads((run_dir / "report.json").read_text())
    training = dict(report["training"])
    history = [h for h in report["history"] if "loss" in h]
    training["last_loss"] = history[-1]["loss"] if history else None
    return training


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="smollm2-135m", help="catalog name or folder whose config.json and "
                                                                "tokenizer the model takes (weights unused)")
    parser.add_argument("--shape", default="smollm2-1.7b", choices=sorted(SHAPES))
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated, from: " + ", ".join(RECIPES))
    parser.add_argument("--steps", type=int, default=20, help="optimizer updates per recipe")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=1024, help="tokens per training row")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--out", default="runs/gpu-memory")
    parser.add_argument("--data", default=None, help="Training corpus (default: the generation task's, shakespeare).")
    args = parser.parse_args(argv)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(RECIPES)}")

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_dir = out / f"model-{args.shape}"
    if (model_dir / "parameters.txt").exists():
        count = int((model_dir / "parameters.txt").read_text())
    else:
        count = build_model(args.base, args.shape, model_dir)
    print(f"model: {args.shape} shape, {count / 1e9:.3f}B parameters, {args.batch_size} x {args.block_size} tokens "
          f"per update, gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}, "
          f"{args.steps} updates per recipe", flush=True)

    rows = {}
    for recipe in recipes:
        rows[recipe] = run_recipe(recipe, model_dir, out, args)
        print(recipe, json.dumps(rows[recipe]), flush=True)
    (out / "gpu_memory.json").write_text(json.dumps({"parameters": count, "args": vars(args), "runs": rows},
                                                    indent=2))

    print("\n| recipe | trainable parameters | peak GPU memory (GiB) | tokens/s | MFU | loss after the last update |")
    print("|---|---|---|---|---|---|")
    for recipe, r in rows.items():
        if "error" in r:
            lines = r["error"].strip().splitlines()
            said = next((ln for ln in lines if ln.startswith("error:")), lines[-1])
            print(f"| {recipe} | failed: {said[:200]} | | | | |")
            continue
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
        trainable = f"{r['trainable_parameters']:,}" if r.get("trainable_parameters") else "-"
        print(f"| {recipe} | {trainable} | {r.get('peak_gpu_memory_gib', '-')} | {r.get('tokens_per_s', '-')} | "
              f"{mfu} | {r['last_loss']} |")


if __name__ == "__main__":
    main()
