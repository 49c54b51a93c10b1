"""``nlpkit serve`` routes of the generation task: OpenAI's ``/v1/completions`` and ``/v1/chat/completions``.

The official ``openai`` client (and anything written against OpenAI's API) works with ``base_url=
"http://HOST:PORT/v1"``. What is taken, and how it maps to ``nlpkit.pipeline(run)(prompt, **options)``:

* ``max_tokens`` (chat also ``max_completion_tokens``) -> ``max_new_tokens`` (default: the run's);
* ``temperature``: 0 -> greedy; above 0 -> sampling at that temperature; left out -> the run's decoding (greedy
  unless the run samples; ``top_p`` or ``top_k`` alone then switch sampling on);
* ``top_p``, ``stop`` (a string or a list), ``seed``, ``n`` (-> ``num_return_sequences``, needs sampling),
  ``echo`` (completions: the prompt before its continuation); and, as vLLM also takes them, ``top_k``,
  ``repetition_penalty``, ``no_repeat_ngram_size``;
* chat ``messages`` go through the tokenizer's chat template (text parts of a ``content`` list are joined);
* ``stream: true`` answers with server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``
  (``stream_options: {"include_usage": true}`` adds a last chunk with the usage counts);
* ``presence_penalty`` / ``frequency_penalty`` / ``logprobs`` are accepted only at their "off" values (some
  clients always send them); any other unknown field is refused (422, naming it).

Concurrent requests with the same decoding settings are merged into one batched ``generate`` (left-padded: a
greedy output does not depend on its batch mates); streamed requests too, each row's text sent to its own
client as it is decoded (:func:`nlpkit.causal_lm.stream_generate_batch`). A request that joins while a batch
decodes waits for the next one (no continuous batching: see docs/serving.md). A seeded sampling request runs
alone (its output must not depend on its batch mates either).
Usage counts: prompt tokens as the model reads them, completion tokens by tokenizing the returned text again
(the text is cut at a stop string); ``finish_reason`` is ``length`` when the completion used ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from nlpkit.errors import NlpkitError

if TYPE_CHECKING:
    from nlpkit.serve.app import Server


logger = logging.getLogger("nlpkit.serve")


class _Sink:
    """Where the model thread puts one streamed request's pieces, for its response on the event loop; ``gone``
    says the client has left."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.gone = threading.Event()

    def put(self, piece: str) -> None:
        if not self.gone.is_set():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, piece)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Decoding(BaseModel):
    """The decoding fields both routes take."""

    model_config = ConfigDict(extra="forbid")

    model: Optional[str] = Field(None, description="Accepted for OpenAI clients; the server has one model.")
    max_tokens: Optional[int] = Field(None, ge=1, description="Most tokens to generate (default: the run's "
                                                             "generate.max_new_tokens).")
    temperature: Optional[float] = Field(None, ge=0, le=2, description="0: greedy; > 0: sampling at this "
                                         "temperature; left out: the run's decoding.")
    top_p: Optional[float] = Field(None, gt=0, le=1, description="Nucleus sampling.")
    top_k: Optional[int] = Field(None, ge=0, description="Sample from the k most likely tokens (0: off).")
    repetition_penalty: Optional[float] = Field(None, gt=0, description="> 1 discourages repeats.")
    no_repeat_ngram_size: Optional[int] = Field(None, ge=0, description="Never repeat an n-gram this long.")
    n: int = Field(1, ge=1, le=16, description="Completions per prompt (needs sampling).")
    stop: Optional[Union[str, list[str]]] = Field(None, description="Stop strings: the text ends before the "
                                                  "first one.")
    seed: Optional[int] = Field(None, description="Seed for sampling (the request then runs alone).")
    stream: bool = Field(False, description="Answer with server-sent events as the text is generated.")
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = Field(None, description="Accepted for OpenAI clients; not used.")
    presence_penalty: float = Field(0.0, ge=0, le=0, description="Only 0 (not supported).")
    frequency_penalty: float = Field(0.0, ge=0, le=0, description="Only 0 (not supported).")
    logprobs: Optional[Union[bool, int]] = Field(None, description="Only null/false (not supported).")


class CompletionRequest(_Decoding):
    prompt: Union[str, list[str]] = Field(description="A prompt, or a list of prompts.")
    echo: bool = Field(False, description="Return the prompt before its continuation.")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"] = "text"
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart]]
    name: Optional[str] = None


class ChatRequest(_Decoding):
    messages: list[Message] = Field(min_length=1, description="The conversation so far.")
    max_completion_tokens: Optional[int] = Field(None, ge=1, description="The same as max_tokens.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ChatMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


def routes(server: Server) -> APIRouter:
    """``/v1/completions`` and ``/v1/chat/completions`` (see the module docstring)."""
    request_id = server.request_id
    router = APIRouter(tags=["generation"])
    task = server.task
    tokenizer = server.tokenizer  # the server's own copy, safe to use on the event loop
    run_max = task.cfg.generate.max_new_tokens

    def decoding(req: _Decoding) -> tuple[dict[str, Any], int]:
        """(pipeline options, max new tokens) of a request."""
        if req.logprobs not in (None, False, 0):
            raise server.error(422, "logprobs are not supported; leave the field out.", "logprobs")
        options: dict[str, Any] = {}
        limit = getattr(req, "max_completion_tokens", None) or req.max_tokens
        if limit is not None:
            options["max_new_tokens"] = limit
        if req.temperature is not None:
            options["do_sample"] = req.temperature > 0
            if req.temperature > 0:
                options["temperature"] = req.temperature
        elif req.top_p is not None or req.top_k is not None:
            options["do_sample"] = True
        for key in ("top_p", "top_k", "repetition_penalty", "no_repeat_ngram_size", "seed"):
            if getattr(req, key) is not None:
                options[key] = getattr(req, key)
        if req.stop is not None:
            options["stop"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
        if req.n > 1:
            sampling = options.get("do_sample", task.cfg.generate.do_sample)
            if not sampling:
                raise server.error(422, f"n={req.n} asks for several completions, but decoding is greedy and has "
                                        f"one answer: set temperature > 0.", "n")
            options["num_return_sequences"] = req.n
        try:  # the task's own check of the options, before the request is queued (a bad one fails alone)
            task.decoding(**options)
        except NlpkitError as err:
            raise server.error(422, str(err)) from None
        return options, limit or run_max

    def completion_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    def prompt_tokens(prompt: Any) -> int:
        if isinstance(prompt, str):
            return server.count_tokens([prompt])[0]
        rendered = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return len(tokenizer(rendered, add_special_tokens=False)["input_ids"])

    def finish(text: str, limit: int) -> str:
        return "length" if completion_tokens(text) >= limit else "stop"

    def chat_prompt(req: ChatRequest) -> list[dict[str, str]]:
        if getattr(tokenizer, "chat_template", None) is None:
            raise server.error(422, "This model's tokenizer has no chat template: use /v1/completions.",
                               "messages")
        return [{"role": m.role, "content": m.content if isinstance(m.content, str)
                 else "".join(p.text for p in m.content)} for m in req.messages]

    async def generate(prompts: list[Any], texts: list[str], options: dict[str, Any], req: _Decoding
                       ) -> list[list[str]]:
        """``n`` texts per prompt, through the batcher."""
        call = {k: v for k, v in options.items()}
        sampled_alone = call.get("seed") is not None and call.get("do_sample", task.cfg.generate.do_sample)
        outs = await server.predict(prompts, call, field="messages" if isinstance(req, ChatRequest) else "prompt",
                                    texts=texts, batchable=not sampled_alone)
        return [o if isinstance(o, list) else [o] for o in outs]

    def usage(prompts: list[Any], outputs: list[list[str]]) -> dict[str, int]:
        p = sum(prompt_tokens(x) for x in prompts)
        c = sum(completion_tokens(t) for texts in outputs for t in texts)
        server.metrics.tokens.labels("output").inc(c)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def sse(chunk: dict[str, Any] | str) -> str:
        return f"data: {chunk if isinstance(chunk, str) else json.dumps(chunk)}\n\n"

    def stream_call(items: list[tuple[Any, _Sink, dict[str, Any]]]) -> list[str]:
        """One batched generation for the merged streamed requests (same options: the first one's), each row's
        pieces sent to its own request as they are decoded."""
        sinks = [sink for _, sink, _ in items]
        return task.stream_batch([prompt for prompt, _, _ in items], lambda i, piece: sinks[i].put(piece),
                                 cancelled=lambda: all(s.gone.is_set() for s in sinks), **items[0][2])

    def streamed(prompt: Any, texts: list[str], text_prefix: str, options: dict[str, Any], limit: int, chat: bool,
                 req: _Decoding) -> StreamingResponse:
        if req.n > 1:
            raise server.error(422, "stream: true gives one completion: leave n out (or 1).", "n")
        ident, created = f"{'chatcmpl' if chat else 'cmpl'}-{request_id()}", int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"
        options = {k: v for k, v in options.items() if k != "return_full_text"}
        sampled_alone = options.get("seed") is not None and options.get("do_sample", task.cfg.generate.do_sample)
        field = "messages" if chat else "prompt"

        def chunk(piece: str | None, reason: str | None, first: bool = False) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else \
                    ({"content": piece} if piece is not None else {})
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            else:
                choice = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": reason}
            return {"id": ident, "object": kind, "created": created, "model": server.model_name, "choices": [choice]}

        async def events() -> AsyncIterator[str]:
            sink = _Sink()
            job = asyncio.ensure_future(server.batched(
                stream_call, [(prompt, sink, options)], texts=texts, field=field, batchable=not sampled_alone,
                key=("stream", json.dumps(options, sort_keys=True)), retry=False))
            try:
                if chat:
                    yield sse(chunk(None, None, first=True))
                elif text_prefix:
                    yield sse(chunk(text_prefix, None))
                while True:
                    piece = asyncio.ensure_future(sink.queue.get())
                    await asyncio.wait({piece, job}, return_when=asyncio.FIRST_COMPLETED)
                    if not piece.done():  # the generation ended: what it sent is already queued
                        piece.cancel()
                        break
                    yield sse(chunk(piece.result(), None))
                while not sink.queue.empty():
                    yield sse(chunk(sink.queue.get_nowait(), None))
                text = job.result()[0]
                yield sse(chunk(None, finish(text, limit)))
                if req.stream_options is not None and req.stream_options.include_usage:
                    yield sse({"id": ident, "object": kind, "created": created, "model": server.model_name,
                               "choices": [], "usage": usage([prompt], [[text]])})
                else:
                    server.metrics.tokens.labels("output").inc(completion_tokens(text))
            except Exception as err:  # noqa: BLE001 - the status line is sent: the error goes in the stream
                status = getattr(err, "status", 500)
                message = getattr(err, "message", None) or f"Internal error while generating (request id " \
                                                            f"{request_id()})."
                if status == 500:
                    logger.exception("stream failed")
                yield sse({"error": {"message": message, "type": "server_error", "param": None, "code": status}})
            finally:  # also when the client went away: its row stops being read; all gone -> generation stops
                sink.gone.set()
                if not job.done():
                    job.cancel()
            yield sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.post("/v1/completions", response_model=CompletionResponse,
                 responses={200: {"content": {"text/event-stream": {}}}},
                 summary="Continue prompts (OpenAI's completions API).")
    async def completions(req: CompletionRequest) -> Any:
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        options, limit = decoding(req)
        if req.echo:
            options["return_full_text"] = True
        if req.stream:
            if len(prompts) != 1:
                raise server.error(422, "stream: true takes one prompt.", "prompt")
            return streamed(prompts[0], prompts, prompts[0] if req.echo else "", options, limit, False, req)
        outputs = await generate(prompts, prompts, options, req)
        choices = [{"index": i * req.n + j, "text": text, "logprobs": None,
                    "finish_reason": finish(text[len(prompts[i]):] if req.echo else text, limit)}
                   for i, texts in enumerate(outputs) for j, text in enumerate(texts)]
        return {"id": f"cmpl-{request_id()}", "object": "text_completion", "created": int(time.time()),
                "model": server.model_name, "choices": choices, "usage": usage(prompts, outputs)}

    @router.post("/v1/chat/completions", response_model=ChatResponse,
                 responses={200: {"content": {"text/event-stream": {}}}},
                 summary="Answer a conversation (OpenAI's chat completions API), through the chat template.")
    async def chat_completions(req: ChatRequest) -> Any:
        messages = chat_prompt(req)
        options, limit = decoding(req)
        texts = [m["content"] for m in messages]
        if req.stream:
            return streamed(messages, texts, "", options, limit, True, req)
        outputs = await generate([messages], texts, options, req)
        choices = [{"index": j, "message": {"role": "assistant", "content": text}, "logprobs": None,
                    "finish_reason": finish(text, limit)} for j, text in enumerate(outputs[0])]
        return {"id": f"chatcmpl-{request_id()}", "object": "chat.completion", "created": int(time.time()),
                "model": server.model_name, "choices": choices, "usage": usage([messages], outputs)}

    return router
