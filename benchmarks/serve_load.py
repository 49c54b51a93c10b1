"""Load test of ``nlpkit serve`` on loopback: many concurrent clients, one text per request.

    python benchmarks/serve_load.py --smoke          # a few seconds on a tiny untrained classifier: the script works
    python benchmarks/serve_load.py --run outputs/sentiment-<ts> --export exports/sentiment-int8 \\
        --clients 64 --requests 2000
    python benchmarks/serve_load.py --smoke --generation                # streaming generation, tiny model
    python benchmarks/serve_load.py --generation outputs/generation-<ts> --streams 16
    python benchmarks/serve_load.py --translation outputs/translation-<ts> --clients 32 --requests 256
    python benchmarks/serve_load.py --faults --run outputs/sentiment-<ts>  # soak, SIGTERM under load, 429s

Targets, each started as its own process on 127.0.0.1 and stopped (SIGTERM) after its turn:

* ``serve``: ``nlpkit serve RUN`` (PyTorch), with its dynamic batching;
* ``serve-export``: ``nlpkit serve EXPORT`` (an ``nlpkit export`` folder, e.g. int8), when ``--export`` is given;
* ``serve-bf16``: ``nlpkit serve RUN --dtype bfloat16``, with ``--bf16``;
* ``peer``: what people write by hand: a FastAPI endpoint that calls ``transformers.pipeline(
  "text-classification")`` once per request, on the same model, with the same torch threads.

With ``--generation RUN`` it measures streaming generation instead: ``--streams`` streaming chat requests at
once through the official ``openai`` client against ``nlpkit serve RUN`` (batched streams), then the same
requests one at a time: aggregate completion tokens/s of each, time to first token p50/p99, and whether every
streamed text equals ``nlpkit.pipeline``'s greedy answer.

With ``--translation RUN``: ``nlpkit serve RUN`` against the peer people write for a translator (FastAPI calling
the tokenizer and ``model.generate`` once per request, with the run's decoding settings), outputs compared with
``nlpkit.pipeline``'s. With ``--faults``: a soak of ``--soak-seconds`` at 32 clients (errors, resident memory
from the first seconds of load to the end), SIGTERM after ``--sigterm-after`` seconds of load at 64 clients (every
request written to the socket before it must be answered), and 64 clients against ``--max-concurrency 16``
(429s counted).

Every target gets the same requests (rotten_tomatoes test texts; synthetic texts with ``--smoke``) from
``--clients`` concurrent clients. Columns: requests/s, p50 and p99 latency, errors (non-200 or no answer),
agreement of the labels with ``nlpkit.pipeline`` on the same model (row by row), and the ratios to the peer.
Targets run ``--rounds`` times in rotated order (the machine's speed drifts); requests/s is the median round.
Bounded: each target stops after ``--max-seconds``, each request after ``--request-timeout``; nothing
listens beyond loopback. Run it on an otherwise idle machine; numbers from a shared machine mean little.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


#: The hand-written translation peer: tokenizer + ``model.generate`` once per request (transformers 5 has no
#: translation pipeline), with the run's decoding settings.
TRANSLATION_PEER = textwrap.dedent('''
    import json, os, torch
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    torch.set_num_threads(int(os.environ["PEER_THREADS"]))
    tok = AutoTokenizer.from_pretrained(os.environ["PEER_MODEL"])
    model = AutoModelForSeq2SeqLM.from_pretrained(os.environ["PEER_MODEL"]).eval()
    kwargs = json.loads(os.environ["PEER_GENERATE"])
    app = FastAPI()

    class Body(BaseModel):
        inputs: str

    @app.post("/v1/translate")
    def translate(body: Body):
        enc = tok(body.inputs, return_tensors="pt", truncation=True, max_length=int(os.environ["PEER_MAX_LENGTH"]))
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        return {"translations": tok.decode(out[0], skip_special_tokens=True).strip()}
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


def start(kind: str, model: str, port: int, args: argparse.Namespace, workdir: Path,
          extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """The target's server process (its output goes to a log file in ``workdir``). ``kind``: ``serve`` /
    ``serve-export`` / ``serve-bf16`` (``nlpkit serve``, with ``extra`` options), ``peer`` or ``translation-peer``."""
    # OMP_NUM_THREADS for both: an OpenMP thread count set in one thread does not reach the others
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.threads)}
    log = open(workdir / f"{kind}.log", "a")  # noqa: SIM115 - closed with the process
    if kind in ("peer", "translation-peer"):
        script = "peer" if kind == "peer" else "translation_peer"
        (workdir / f"{script}.py").write_text(PEER if kind == "peer" else TRANSLATION_PEER)
        folder = Path(model) / "model" if (Path(model) / "model").is_dir() else Path(model)
        env |= {"PEER_MODEL": str(folder), "PEER_THREADS": str(args.threads), "PEER_MAX_LENGTH": str(args.max_length),
                "PEER_GENERATE": json.dumps(getattr(args, "generate_kwargs", {})), "PYTHONPATH": str(workdir)}
        cmd = [sys.executable, "-m", "uvicorn", f"{script}:app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]
    else:
        cmd = [sys.executable, "-m", "nlpkit.cli", "serve", model, "--port", str(port), "--log-level", "warning",
               "--max-wait-ms", str(args.max_wait_ms), "--max-concurrency", str(max(256, args.clients * 2)),
               "--threads", str(args.threads), *extra]
        if args.task:
            cmd += ["--task", args.task]
        if kind == "serve-bf16":
            cmd += ["--dtype", "bfloat16"]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


async def load(url: str, texts: list[str], clients: int, request_timeout: float, max_seconds: float, *,
               route: str = "/v1/classify", body: Callable[[str], dict] = lambda t: {"inputs": t},
               answer: Callable[[dict], Any] = lambda b: b["predictions"]["label"], repeat: bool = False,
               stop_on_error: bool = False, stamp_sent: bool = False) -> dict:
    """Send every text as one request to ``route`` from ``clients`` concurrent clients: latencies, statuses,
    answers, and each request's (start, end, status) in ``events`` (status 0: no HTTP answer). ``repeat``: cycle
    through the texts until ``max_seconds`` have passed (a soak), instead of once. ``stop_on_error``: a client
    stops at its first answer other than 200 (a server shutting down refuses every new connection at once).
    ``stamp_sent``: each event's start is when the request's body went to the socket (``inf``: it never did),
    not when the client began it: aiohttp writes the body from a task of its own, a loop turn or more later.

    The clients are aiohttp's: the load generator shares the machine's cores with the server, and httpx's
    AsyncClient spent so much CPU per request that it, not the server, set the pace (measured against one
    ``nlpkit serve``: 60 requests/s through httpx, 210 through aiohttp, same server, same texts)."""
    import aiohttp

    answers: list = [None] * len(texts)
    events: list[tuple[float, float, int]] = []
    next_index = 0
    deadline = time.monotonic() + max_seconds
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    trace = aiohttp.TraceConfig()

    async def body_sent(session: Any, context: Any, params: Any) -> None:
        context.trace_request_ctx["sent"] = time.perf_counter()  # just before the write, no loop turn between

    trace.on_request_chunk_sent.append(body_sent)
    async with aiohttp.ClientSession(base_url=url, connector=connector, timeout=timeout,
                                     trace_configs=[trace] if stamp_sent else []) as client:
        async def worker() -> None:
            nonlocal next_index
            while (repeat or next_index < len(texts)) and time.monotonic() < deadline:
                i = next_index % len(texts)
                next_index += 1
                t0 = time.perf_counter()
                status, got, stamps = 0, None, {"sent": math.inf}
                try:
                    async with client.post(route, json=body(texts[i]), trace_request_ctx=stamps) as r:
                        status = r.status
                        if r.status == 200:
                            got = answer(await r.json())
                        else:
                            await r.read()
                except (aiohttp.ClientError, TimeoutError):
                    pass
                events.append((stamps["sent"] if stamp_sent else t0, time.perf_counter(), status))
                if got is not None:
                    answers[i] = got
                elif stop_on_error:
                    return

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(clients)])
        wall = time.perf_counter() - start
    latencies = sorted(end - begin for begin, end, _ in events)
    done = len(events)
    return {"requests": done, "errors": sum(status != 200 for *_, status in events) + max(0, len(texts) - done),
            "seconds": wall, "rps": done / wall if wall else 0.0,
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": percentile(latencies, 0.99), "answers": answers, "events": events}


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nan for none)."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


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


def tiny_translator(folder: Path) -> Path:
    """An untrained 1+1-layer, width-32 Marian model with nlpkit's shared BPE tokenizer (for --smoke)."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    from nlpkit.plugins.translation.tokenizer import train_shared_tokenizer

    words = "in the beginning god created heaven and earth light was good au commencement dieu crea le ciel et la terre"
    tok = train_shared_tokenizer([words] * 20, vocab_size=80, algorithm="bpe", model_max_length=64)
    config = MarianConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                          max_position_embeddings=256, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                          decoder_start_token_id=tok.pad_token_id, forced_eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    MarianMTModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
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


@contextlib.contextmanager
def served(kind: str, model: str, args: argparse.Namespace, workdir: Path,
           extra: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen]]:
    """A started and ready target (its URL and process), stopped with SIGTERM at the end."""
    port = free_port()
    proc = start(kind, model, port, args, workdir, extra)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + ("/docs" if kind.endswith("peer") else "/ready"), proc, 300)
        yield url, proc
    finally:
        stop_server(proc)


def rounds_of(targets: list[tuple[str, str]], rounds: int) -> Iterator[tuple[str, str]]:
    """Every target once per round, the order rotated each round (the machine's speed drifts within a run)."""
    for r in range(rounds):
        k = r % len(targets)
        yield from targets[k:] + targets[:k]


def summary(runs: list[dict], expected: list[Any]) -> dict:
    """One target's rounds: median requests/s, pooled latencies, all errors, agreement with ``expected``."""
    latencies = sorted(end - begin for r in runs for begin, end, status in r["events"] if status == 200)
    answered = [(a, e) for r in runs for a, e in zip(r["answers"], expected) if a is not None]
    return {"rps": statistics.median(r["rps"] for r in runs), "rps_rounds": [r["rps"] for r in runs],
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": percentile(latencies, 0.99), "errors": sum(r["errors"] for r in runs),
            "requests": sum(r["requests"] for r in runs),
            "agreement": sum(a == e for a, e in answered) / len(answered) if answered else 0.0,
            "exit_codes": [r["exit_code"] for r in runs]}


def print_table(title: str, results: dict[str, dict], peer: str) -> None:
    print(f"\n{title}\n")
    print(f"{'target':17s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s} {'agree':>8s} {'x peer':>7s} "
          f"{'exit':>6s}  req/s by round")
    base = results.get(peer, {}).get("rps")
    for kind, r in results.items():
        ratio = f"{r['rps'] / base:.2f}" if base else "-"
        print(f"{kind:17s} {r['rps']:8.1f} {r['p50'] * 1000:8.0f} {r['p99'] * 1000:8.0f} {r['errors']:7d} "
              f"{r['agreement'] * 100:7.2f}% {ratio:>7s} {','.join(map(str, r['exit_codes'])):>6s}  "
              f"{' '.join(f'{x:.1f}' for x in r['rps_rounds'])}")


def measure(targets: list[tuple[str, str]], texts: list[str], expected: list[Any], args: argparse.Namespace,
            workdir: Path, **request: Any) -> dict[str, dict]:
    """Each target's load test, ``args.rounds`` rounds in rotated order, summarised."""
    runs: dict[str, list[dict]] = {kind: [] for kind, _ in targets}
    for kind, model in rounds_of(targets, args.rounds):
        with served(kind, model, args, workdir) as (url, proc):
            asyncio.run(load(url, texts[:min(len(texts), 2 * args.clients)], args.clients, args.request_timeout,
                             30.0, **request))  # warm-up, not counted
            result = asyncio.run(load(url, texts, args.clients, args.request_timeout, args.max_seconds, **request))
        result["exit_code"] = proc.returncode
        runs[kind].append(result)
    return {kind: summary(r, expected) for kind, r in runs.items()}


def classify_test(args: argparse.Namespace, workdir: Path) -> dict:
    """(a) ``nlpkit serve`` on the run, (b) on its export, (c) the hand-written peer (see the module docstring)."""
    import nlpkit

    texts = texts_for(args)
    reference = nlpkit.pipeline(args.task, model=args.run, device="cpu") if args.task else \
        nlpkit.pipeline(args.run, device="cpu")
    expected = [p["label"] for p in reference(texts)]
    del reference
    targets = [("serve", args.run)] + ([("serve-export", args.export)] if args.export else [])
    if args.bf16:
        targets.append(("serve-bf16", args.run))
    if not args.skip_peer:
        targets.append(("peer", args.run))
    results = measure(targets, texts, expected, args, workdir)
    print_table(f"{args.clients} clients, {len(texts)} requests of one text each, {args.threads} threads per server, "
                f"{args.rounds} round(s) in rotated order{' (smoke: tiny untrained model)' if args.smoke else ''}",
                results, "peer")
    return results


def translation_test(args: argparse.Namespace, workdir: Path) -> dict:
    """``nlpkit serve`` on a translation run vs the per-request peer: throughput, latency, identical outputs."""
    import nlpkit

    pipe = nlpkit.pipeline(args.task, model=args.translation, device="cpu") if args.task else \
        nlpkit.pipeline(args.translation, device="cpu")
    texts = translation_sources(args, pipe)
    expected = pipe(texts)
    args.generate_kwargs = pipe.task.cfg.generate.generate_kwargs()
    del pipe
    route = {"route": "/v1/translate", "answer": lambda b: b["translations"]}
    results = measure([("serve", args.translation), ("translation-peer", args.translation)], texts, expected, args,
                      workdir, **route)
    print_table(f"translation: {args.clients} clients, {len(texts)} requests of one source text each, "
                f"{args.threads} threads per server, decoding {args.generate_kwargs}, {args.rounds} round(s) "
                f"({'agree' } = identical to nlpkit.pipeline){' (smoke: tiny untrained model)' if args.smoke else ''}",
                results, "translation-peer")
    return results


def translation_sources(args: argparse.Namespace, pipe: Any) -> list[str]:
    """Source sentences of the run's test split, as its task loads it (synthetic ones with ``--smoke``)."""
    if args.smoke:
        import random

        rng = random.Random(0)
        words = "in the beginning god created heaven and earth light was good".split()
        return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 20))) for _ in range(args.requests)]
    return list(pipe.task.load_data().splits["test"]["source"][:args.requests])


def rss_mib(pid: int) -> float:
    """Resident memory of a process (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def faults_test(args: argparse.Namespace, workdir: Path) -> dict:
    """A soak (``--soak-seconds`` at 32 clients: errors, resident memory growth), SIGTERM under load (every
    request sent before it answered?), and the in-flight cap (429s with ``--max-concurrency 16`` at 64 clients)."""
    texts = texts_for(args)
    out: dict[str, Any] = {}

    # soak: memory measured once the first seconds of load have warmed every path, then every 5 s
    with served("serve", args.run, args, workdir) as (url, proc):
        asyncio.run(load(url, texts, 32, args.request_timeout, min(10.0, args.soak_seconds / 6), repeat=True))
        samples = [rss_mib(proc.pid)]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(5.0):
                samples.append(rss_mib(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        soak = asyncio.run(load(url, texts, 32, args.request_timeout, args.soak_seconds, repeat=True))
        stop.set()
        sampler.join()
        samples.append(rss_mib(proc.pid))
    growth = (samples[-1] - samples[0]) / samples[0] * 100
    out["soak"] = {"seconds": soak["seconds"], "requests": soak["requests"], "errors": soak["errors"],
                   "rps": soak["rps"], "rss_start_mib": samples[0], "rss_end_mib": samples[-1],
                   "rss_max_mib": max(samples), "rss_growth_pct": growth}
    print(f"\nsoak: {soak['seconds']:.0f} s at 32 clients: {soak['requests']} requests, {soak['errors']} errors, "
          f"{soak['rps']:.1f} req/s; resident memory {samples[0]:.0f} -> {samples[-1]:.0f} MiB "
          f"(max {max(samples):.0f}, growth {growth:+.2f}%)")

    # SIGTERM under load: the requests sent before it must all be answered
    with served("serve", args.run, args, workdir) as (url, proc):
        async def terminated() -> tuple[dict, float]:
            when: list[float] = []

            def term() -> None:
                when.append(time.perf_counter())
                proc.send_signal(signal.SIGTERM)

            asyncio.get_running_loop().call_later(args.sigterm_after, term)
            result = await load(url, texts, 64, args.request_timeout, 60.0, repeat=True, stop_on_error=True,
                                stamp_sent=True)
            return result, when[0]

        result, at = asyncio.run(terminated())
        proc.wait(60)
    before = [e for e in result["events"] if e[0] < at]
    in_flight = [e for e in before if e[1] >= at]
    out["sigterm"] = {"sent_before": len(before), "answered_before": sum(e[2] == 200 for e in before),
                      "in_flight_at_sigterm": len(in_flight), "in_flight_answered": sum(e[2] == 200 for e in in_flight),
                      "refused_after": sum(e[2] != 200 for e in result["events"] if e[0] >= at),
                      "exit_code": proc.returncode,
                      "lost": [(round(b - at, 4), round(e - at, 4), st) for b, e, st in before if st != 200]}
    s = out["sigterm"]
    print(f"SIGTERM after {args.sigterm_after:g} s at 64 clients: {s['answered_before']}/{s['sent_before']} "
          f"requests sent before it answered 200 ({s['in_flight_answered']}/{s['in_flight_at_sigterm']} of those in "
          f"flight at the signal); {s['refused_after']} sent after it refused; server exit code {s['exit_code']}")

    # the in-flight cap: 64 clients against --max-concurrency 16
    with served("serve", args.run, args, workdir, ("--max-concurrency", "16")) as (url, proc):
        cap = asyncio.run(load(url, texts, 64, args.request_timeout, args.max_seconds))
    statuses = [e[2] for e in cap["events"]]
    out["cap"] = {"requests": len(statuses), "ok": statuses.count(200), "429": statuses.count(429),
                  "other": sum(x not in (200, 429) for x in statuses)}
    c = out["cap"]
    print(f"--max-concurrency 16 at 64 clients: {c['requests']} requests: {c['ok']} answered, {c['429']} refused "
          f"with 429, {c['other']} other")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="A sentiment run folder (required unless --smoke).")
    parser.add_argument("--export", help="Its `nlpkit export` folder (e.g. int8), served as a second target.")
    parser.add_argument("--clients", type=int, default=64, help="Concurrent clients (default 64).")
    parser.add_argument("--requests", type=int, default=2000, help="Requests per target and round, one text each.")
    parser.add_argument("--rounds", type=int, default=2,
                        help="Rounds over the targets, in rotated order (default 2); requests/s is their median.")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch / ONNX Runtime threads of every server (default: nlpkit serve's).")
    parser.add_argument("--max-length", type=int, default=128, help="The peers' truncation (nlpkit uses the run's).")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="nlpkit serve --max-wait-ms.")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="Stop a target's load after this long.")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="Per request, seconds.")
    parser.add_argument("--skip-peer", action="store_true", help="Only the nlpkit targets.")
    parser.add_argument("--bf16", action="store_true",
                        help="Also serve the run with --dtype bfloat16 (its labels compared with the fp32 pipeline's); "
                             "fast only on a CPU with bf16 instructions (AVX512-BF16, AMX) or a GPU.")
    parser.add_argument("--json", help="Also write the results to this JSON file.")
    parser.add_argument("--translation", metavar="RUN", nargs="?", const="",
                        help="Measure a translation run instead: nlpkit serve vs a FastAPI endpoint calling "
                             "model.generate once per request (with --smoke: a tiny untrained model).")
    parser.add_argument("--faults", action="store_true",
                        help="On --run: a soak (--soak-seconds at 32 clients: errors, memory growth), SIGTERM under "
                             "load, and 429s past --max-concurrency 16.")
    parser.add_argument("--soak-seconds", type=float, default=180.0, help="Length of the --faults soak (default 180).")
    parser.add_argument("--sigterm-after", type=float, default=3.0, help="Seconds of load before --faults' SIGTERM.")
    parser.add_argument("--generation", metavar="RUN", nargs="?", const="",
                        help="Measure streaming generation on this run instead (with --smoke: a tiny untrained "
                             "model).")
    parser.add_argument("--streams", type=int, default=16, help="Concurrent streams of --generation (default 16).")
    parser.add_argument("--max-tokens", type=int, default=48, help="New tokens per stream of --generation.")
    parser.add_argument("--smoke", action="store_true",
                        help="A tiny untrained model, 8 clients, 64 requests, one round: checks the script in seconds.")
    args = parser.parse_args()
    args.task = None
    if args.threads is None:
        from nlpkit.serve.settings import default_threads

        args.threads = default_threads()
    workdir = Path(tempfile.mkdtemp(prefix="serve-load-"))
    if args.smoke:
        args.clients, args.requests, args.rounds = min(args.clients, 8), min(args.requests, 64), 1
        args.max_seconds, args.soak_seconds, args.sigterm_after = 60.0, min(args.soak_seconds, 6.0), 1.0
    if args.generation is not None:
        if args.smoke:
            args.generation, args.task = str(tiny_causal_lm(workdir / "tiny-lm")), "generation"
            args.streams, args.max_tokens = min(args.streams, 8), min(args.max_tokens, 16)
        generation_test(args, workdir)
        return
    if args.translation is not None:
        if args.smoke:
            args.translation, args.task = str(tiny_translator(workdir / "tiny-mt")), "translation"
            args.requests = min(args.requests, 16)
        results = translation_test(args, workdir)
    else:
        if args.smoke:
            args.run, args.task = str(tiny_classifier(workdir / "tiny")), "sentiment"
        elif not args.run:
            parser.error("--run is required (or --smoke)")
        results = faults_test(args, workdir) if args.faults else classify_test(args, workdir)
    if args.json:
        Path(args.json).write_text(json.dumps({"clients": args.clients, "threads": args.threads, "rounds": args.rounds,
                                               "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
