"""``nlpkit generate RUN_OR_MODEL PROMPT [options]``: print continuations (``--stream``: as they come)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nlpkit.errors import UsageError


def add_generate_command(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` subcommand to the ``nlpkit`` command line."""
    p = subparsers.add_parser("generate", help="Continue prompts with a generation run or any causal LM.",
                              description="Greedy by default; --do-sample/--temperature/--top-p switch to sampling.")
    p.add_argument("model", help="Generation run folder, model folder, catalog name or hub id.")
    p.add_argument("prompts", nargs="*", help="Prompts (default: all of stdin as one prompt).")
    p.add_argument("--max-new-tokens", type=int,
                   help="Tokens to generate (default: the run's generate.max_new_tokens, 48 unless it set another).")
    p.add_argument("--do-sample", action="store_true", help="Sample instead of greedy decoding.")
    p.add_argument("--temperature", type=float, help="Sampling temperature (implies --do-sample).")
    p.add_argument("--top-k", type=int, help="Sample from the k most likely tokens (default 50).")
    p.add_argument("--top-p", type=float, help="Nucleus sampling probability (implies --do-sample).")
    p.add_argument("--repetition-penalty", type=float, help="> 1 discourages repeats.")
    p.add_argument("--no-repeat-ngram-size", type=int,
                   help="Never repeat an n-gram of this many tokens in one output (default: the run's "
                        "generate.no_repeat_ngram_size, 0 (off) unless it set another).")
    p.add_argument("--num-return-sequences", type=int, default=1, help="Outputs per prompt (sampling).")
    p.add_argument("--stop", action="append", help="Stop string (repeatable; \\n for a newline).")
    p.add_argument("--seed", type=int, help="Seed for sampling.")
    p.add_argument("--chat", action="store_true", help="Wrap the prompt in the model's chat template.")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: the first GPU if any).")
    p.add_argument("--stream", action="store_true", help="Print tokens as they are generated (one prompt).")
    p.set_defaults(fn=generate_command)


def decoding_options(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline options the command-line flags ask for (flags left out keep the run's ``generate.*``)."""
    opts: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "seed": args.seed,
                            "num_return_sequences": args.num_return_sequences,
                            "repetition_penalty": args.repetition_penalty,
                            "no_repeat_ngram_size": args.no_repeat_ngram_size}
    if args.do_sample or args.temperature is not None or args.top_p is not None:
        opts.update(do_sample=True, temperature=args.temperature or 1.0, top_p=args.top_p or 1.0,
                    top_k=args.top_k if args.top_k is not None else 50)
    if args.stop:
        opts["stop"] = [s.encode().decode("unicode_escape") for s in args.stop]  # "\n" typed on a shell
    if args.chat:
        opts["chat_template"] = True
    return {k: v for k, v in opts.items() if v is not None}


def generate_command(args: argparse.Namespace) -> None:
    """Print the continuation(s) of each prompt; with ``--stream``, one prompt's as it is generated."""
    from nlpkit.pipeline import pipeline

    opts = decoding_options(args)
    prompts = args.prompts or [sys.stdin.read()]
    if args.stream and (len(prompts) != 1 or opts["num_return_sequences"] != 1):
        raise UsageError("--stream shows one prompt and one sequence at a time.")
    pipe = pipeline("generation", model=args.model, device=args.device)
    if args.stream:
        if not args.chat:
            print(prompts[0], end="", flush=True)
        for piece in pipe.task.stream(prompts[0], **opts):
            print(piece, end="", flush=True)
        print()
        return
    for prompt, out in zip(prompts, pipe(prompts, **opts), strict=True):
        texts = [out] if isinstance(out, str) else out
        for text in texts:
            print(text if args.chat else prompt + text)
            if len(prompts) > 1 or len(texts) > 1:
                print("-" * 40)
