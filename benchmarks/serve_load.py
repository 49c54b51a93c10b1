"""Load test of ``nlpkit serve`` on loopback: many concurrent clients, one text per request.

    python benchmarks/serve_load.py --smoke          # a few seconds on a tiny untrained classifier: the script works
    python benchmarks/serve_load.py --run outputs/sentiment-<ts> --export exports/sentiment-int8 \\
        --clients 64 --requests 2000
    python benchmarks/serve_load.py --smoke --generation                # streaming generation, tiny model
    python benchmarks/serve_load.py --generation outputs/generation-<ts> --streams 16

Targets, each started as its own process on 127.0.0.1 and stopped (SIGTERM) after its turn:

* ``serve``: ``nlpkit serve RUN`` (PyTorch), with its dynamic batching;
* ``serve-export``: ``nlpkit serve EXPORT`` (an ``nlpkit export`` folder, e.g. int8), when ``--export`` is given;
* ``peer``: what people write by hand: a FastAPI endpoint that calls ``transformers.pipeline(
  "text-classification")`` once per request, on the same model, with the same torch threads.

With ``--generation RUN`` it measures streaming generation instead: ``--streams`` streaming chat requests at
once through the official ``openai`` client against ``nlpkit serve RUN`` (batched streams), then the same
requests one at a time: aggregate completion tokens/s of each, time to first token p50/p99, and whether every
streamed text equals ``nlpkit.pipeline``'s greedy answer.

Every target gets the same requests (rotten_tomatoes test texts; synthetic texts with ``--smoke``) from
``--clients`` concurrent clients. Columns: requests/s, p50 and p99 latency, errors (non-200 or no answer),
agreement of the labels with ``nlpkit.pipeline`` on the same model (row by row), and the ratios to the peer.
Bounded: each target stops after ``--max-seconds``, each request after ``--request-timeout``; nothing
listens beyond loopback. Run it on an otherwise idle machine; numbers from a shared machine mean little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

#: The hand-written peer: one transformers.pipeline call per request, FastAPI's thread pool around it.
PEER = textwrap.dedent('''
    import os, torch
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import pipeline

    torch.set_num_threads(int(os.environ["PEER_THREADS"]))
    clf = pipeline("text-classification", model=os.environ["PEER_MODEL"], device="cpu")
    app = FastAPI()

    class Body(BaseModel):
        inputs: str

    @app.post("/v1/classify")
    def classify(body: Body):
        out = clf(body.inputs, truncation=True, max_length=int(os.environ["PEER_MAX_LENGTH"]))[0]
        return {"predictions": {"label": out["label"], "score": out["score"]}}
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, seconds: float) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server at {url} exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server at {url} was not ready within {seconds:.0f} s")


def start(kind: str, model: str, port: int, args: argparse.Namespace, workdir: Path) -> subprocess.Popen:
    """The target's server process (its output goes to a log file in ``workdir``)."""
    # OMP_NUM_THREADS for both: an OpenMP thread count set in one thread does not reach the others
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.threads)}
    log = open(workdir / f"{kind}.log", "w")  # noqa: SIM115 - closed with the process
    if kind == "peer":
        (workdir / "peer.py").write_text(PEER)
        folder = Path(model) / "model" if (Path(model) / "model").is_dir() else Path(model)
        env |= {"PEER_MODEL": str(folder), "PEER_THREADS": str(args.threads), "PEER_MAX_LENGTH": str(args.max_length),
                "PYTHONPATH": str(workdir)}
        cmd = [sys.executable, "-m", "uvicorn", "peer:app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]
    else:
        cmd = [sys.executable, "-m", "nlpkit.cli", "serve", model, "--port", str(port), "--log-level", "warning",
               "--max-wait-ms", str(args.max_wait_ms), "--max-concurrency", str(max(256, args.clients * 2)),
               "--threads", str(args.threads)]
        if args.task:
            cmd += ["--task", args.task]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


async def load(url: str, texts: list[str], clients: int, request_timeout: float, max_seconds: float) -> dict:
    """Send every text as one request from ``clients`` concurrent clients; latencies, statuses, answers."""
    import httpx

    answers: list = [None] * len(texts)
    latencies: list[float] = []
    errors = 0
    next_index = 0
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, timeout=request_timeout, limits=limits) as client:
        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < len(texts) and time.monotonic() < deadline:
                i = next_index
                next_index += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/classify", json={"inputs": texts[i]})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                if ok:
                    answers[i] = r.json()["predictions"]["label"]
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(clients)])
        wall = time.perf_counter() - start
    done = len(latencies)
    latencies.sort()
    return {"requests": done, "errors": errors + (len(texts) - done), "seconds": wall,
            "rps": done / wall if wall else 0.0,
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
            "answers": answers}


def tiny_classifier(folder: Path) -> Path:
    """An untrained 2-layer, width-32 BERT classifier with a word-level tokenizer (for --smoke)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = "the a film movie was is great dull moving boring plot acting and very".split()
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", model_max_length=128)
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2,
                        id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def tiny_causal_lm(folder: Path) -> Path:
    """An untrained 2-layer, width-32 Llama with a byte-level BPE tokenizer and a chat template (for --smoke)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["my good lord, the night is fair and sweet", "what noble friend comes with all speed"] * 50
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>", model_max_length=512)
    fast.chat_template = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
                          "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512, bos_token_id=0,
                         eos_token_id=0, pad_token_id=0, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


async def streams(url: str, conversations: list[list[dict]], max_tokens: int, at_once: bool,
                  timeout: float) -> dict:
    """Stream every conversation through the openai client, all at once or one after another: texts, time to
    first token of each, completion tokens, wall time."""
    import openai

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", timeout=timeout, max_retries=0)

    async def one(messages: list[dict]) -> tuple[str, float, int]:
        start, first, text, tokens = time.perf_counter(), None, "", 0
        stream = await client.chat.completions.create(model="served", messages=messages, max_tokens=max_tokens,
                                                      temperature=0, stream=True,
                                                      stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter() - start
                text += chunk.choices[0].delta.content
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        return text, first if first is not None else time.perf_counter() - start, tokens

    start = time.perf_counter()
    try:
        if at_once:
            done = await asyncio.gather(*[one(m) for m in conversations])
        else:
            done = [await one(m) for m in conversations]
    finally:
        await client.close()
    wall = time.perf_counter() - start
    ttft = sorted(d[1] for d in done)
    return {"texts": [d[0] for d in done], "seconds": wall, "tokens": sum(d[2] for d in done),
            "tokens_per_s": sum(d[2] for d in done) / wall, "ttft_p50": statistics.median(ttft),
            "ttft_p99": ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))]}


def generation_test(args: argparse.Namespace, workdir: Path) -> None:
    """The streaming generation measurement of ``--generation`` (see the module docstring)."""
    import nlpkit

    lines = ["My good lord, what news?", "Speak, sweet friend.", "Who comes there?", "What is the hour?",
             "Tell me of the king.", "Why so sad?", "Where is the queen?", "Fair day, my lord."]
    conversations = [[{"role": "user", "content": lines[i % len(lines)] + ("" if i < len(lines) else " Pray.")}]
                     for i in range(args.streams)]
    pipe = nlpkit.pipeline(args.task, model=args.generation, device="cpu") if args.task else \
        nlpkit.pipeline(args.generation, device="cpu")
    expected = pipe(conversations, max_new_tokens=args.max_tokens, do_sample=False)
    del pipe
    port = free_port()
    proc = start("serve", args.generation, port, args, workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/ready", proc, 300)
        asyncio.run(streams(url, conversations[:2], 4, True, args.request_timeout))  # warm-up
        alone = asyncio.run(streams(url, conversations, args.max_tokens, False, args.request_timeout))
        together = asyncio.run(streams(url, conversations, args.max_tokens, True, args.request_timeout))
    finally:
        stop_server(proc)
    print(f"\n{args.streams} streaming chat requests, {args.max_tokens} new tokens at most, greedy, "
          f"{args.threads} model threads{' (smoke: tiny untrained model)' if args.smoke else ''}\n")
    print(f"{'':18s} {'tokens/s':>9s} {'TTFT p50 ms':>12s} {'TTFT p99 ms':>12s} {'seconds':>8s} {'= pipeline':>11s}")
    for name, r in (("one at a time", alone), (f"{args.streams} at once", together)):
        same = sum(t == e for t, e in zip(r["texts"], expected))
        print(f"{name:18s} {r['tokens_per_s']:9.1f} {r['ttft_p50'] * 1000:12.0f} {r['ttft_p99'] * 1000:12.0f} "
              f"{r['seconds']:8.1f} {same:>5d}/{len(expected)}")
    print(f"\naggregate speed-up at {args.streams} streams: {together['tokens_per_s'] / alone['tokens_per_s']:.2f}x; "
          f"server exit code {proc.returncode}")
    if args.json:
        Path(args.json).write_text(json.dumps({"alone": alone, "together": together, "expected": expected},
                                              indent=2))


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (the server answers what is in flight), then kill it if it has not exited within a minute."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def texts_for(args: argparse.Namespace) -> list[str]:
    if args.smoke:
        import random

        rng = random.Random(0)
        words = "the a film movie was is great dull moving boring plot acting and very".split()
        return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 30))) for _ in range(args.requests)]
    from nlpkit.data import load_source

    ds, _ = load_source("rotten_tomatoes")
    # the catalog gives the corpus as it comes (one split for rotten_tomatoes): every split's texts, in order
    texts = [text for split in ds.values() for text in split["text"]]
    return texts[:args.requests]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="A sentiment run folder (required unless --smoke).")
    parser.add_argument("--export", help="Its `nlpkit export` folder (e.g. int8), served as a second target.")
    parser.add_argument("--clients", type=int, default=64, help="Concurrent clients (default 64).")
    parser.add_argument("--requests", type=int, default=2000, help="Requests per target, one text each.")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch / ONNX Runtime threads of every server (default: nlpkit serve's, the physical "
                             "cores but one).")
    parser.add_argument("--max-length", type=int, default=128, help="The peer's truncation (nlpkit uses the run's).")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="nlpkit serve --max-wait-ms.")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="Stop a target's load after this long.")
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--skip-peer", action="store_true", help="Only the nlpkit targets.")
    parser.add_argument("--json", help="Also write the results to this JSON file.")
    parser.add_argument("--generation", metavar="RUN", nargs="?", const="",
                        help="Measure streaming generation on this run instead (with --smoke: a tiny untrained "
                             "model).")
    parser.add_argument("--streams", type=int, default=16, help="Concurrent streams of --generation (default 16).")
    parser.add_argument("--max-tokens", type=int, default=48, help="New tokens per stream of --generation.")
    parser.add_argument("--smoke", action="store_true",
                        help="A tiny untrained classifier, 8 clients, 64 requests: checks the script in seconds.")
    args = parser.parse_args()
    args.task = None
    if args.threads is None:
        from nlpkit.serve.settings import default_threads

        args.threads = default_threads()
    workdir = Path(tempfile.mkdtemp(prefix="serve-load-"))
    if args.generation is not None:
        if args.smoke:
            args.generation, args.task = str(tiny_causal_lm(workdir / "tiny-lm")), "generation"
            args.streams, args.max_tokens = min(args.streams, 8), min(args.max_tokens, 16)
        generation_test(args, workdir)
        return
    if args.smoke:
        args.run = str(tiny_classifier(workdir / "tiny"))
        args.task = "sentiment"
        args.clients, args.requests, args.max_seconds = min(args.clients, 8), min(args.requests, 64), 60.0
    elif not args.run:
        parser.error("--run is required (or --smoke)")

    import nlpkit

    texts = texts_for(args)
    reference = nlpkit.pipeline(args.task, model=args.run, device="cpu") if args.task else \
        nlpkit.pipeline(args.run, device="cpu")
    expected = [p["label"] for p in reference(texts)]
    del reference

    targets = [("serve", args.run)] + ([("serve-export", args.export)] if args.export else [])
    if not args.skip_peer:
        targets.append(("peer", args.run))
    results: dict[str, dict] = {}
    for kind, model in targets:
        port = free_port()
        proc = start(kind, model, port, args, workdir)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url + ("/ready" if kind != "peer" else "/docs"), proc, 300)
            asyncio.run(load(url, texts[:min(len(texts), 2 * args.clients)], args.clients, args.request_timeout,
                             30.0))  # warm-up, not counted
            result = asyncio.run(load(url, texts, args.clients, args.request_timeout, args.max_seconds))
        finally:
            stop_server(proc)
        # the peer's labels are the model's own names, as nlpkit's are
        answered = [(a, e) for a, e in zip(result.pop("answers"), expected) if a is not None]
        result["agreement"] = sum(a == e for a, e in answered) / len(answered) if answered else 0.0
        result["exit_code"] = proc.returncode
        results[kind] = result

    peer = results.get("peer")
    print(f"\n{args.clients} clients, {len(texts)} requests of one text each, {args.threads} threads per server"
          f"{' (smoke: tiny untrained model)' if args.smoke else ''}\n")
    print(f"{'target':14s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s} {'agree':>8s} "
          f"{'x peer':>7s} {'exit':>5s}")
    for kind, r in results.items():
        ratio = f"{r['rps'] / peer['rps']:.2f}" if peer and peer["rps"] else "-"
        print(f"{kind:14s} {r['rps']:8.1f} {r['p50'] * 1000:8.0f} {r['p99'] * 1000:8.0f} {r['errors']:7d} "
              f"{r['agreement'] * 100:7.2f}% {ratio:>7s} {r['exit_code']:5d}")
    if args.json:
        Path(args.json).write_text(json.dumps({"clients": args.clients, "requests": len(texts),
                                               "threads": args.threads, "results": results}, indent=2))


if __name__ == "__main__":
    main()
