"""Translation: train a small Transformer from scratch, or fine-tune any seq2seq (or causal) model.

* ``model=scratch`` (default): a shared subword tokenizer trained on the training split + a small encoder-decoder
  Transformer built from ``translation.scratch.*``: pre-layer-norm (an ``M2M100ForConditionalGeneration``) by
  default, or the post-layer-norm ``MarianMTModel`` (``translation.scratch.architecture=post_norm``).
* ``model=<seq2seq id or folder>``: Marian (opus-mt), T5 (``translation.source_prefix``, defaulted for T5),
  mBART / NLLB (``translation.source_lang_code`` / ``target_lang_code``, forced BOS) fine-tuned as is.
* ``model=<causal LM>`` (e.g. ``smollm2-135m``): decoder-only translation through :mod:`nlpkit.causal_lm`:
  a prompt around the source, loss on target tokens only, generation stopping at the end of the target.

Which of the two backends runs the model (:mod:`~nlpkit.plugins.translation.seq2seq` or
:mod:`~nlpkit.plugins.translation.decoder_only`) is decided once, in :meth:`TranslationTask.build_model`.
Scored with sacreBLEU and chrF (nlpkit's local ``evaluate`` modules) on generated translations, compared with
the raw reference text (not re-decoded token ids), and next to a copy-the-source baseline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import extract_model_from_parallel

from nlpkit import lora
from nlpkit.callbacks import Callback, LoraAdapters
from nlpkit.config import GenerateConfig
from nlpkit.errors import UsageError
from nlpkit.inference import check_texts
from nlpkit.metrics import compute
from nlpkit.modeling import resolve_model
from nlpkit.plugins.translation.backend import Backend, is_encoder_decoder
from nlpkit.plugins.translation.config import SCRATCH, TranslationConfig
from nlpkit.plugins.translation.data import TranslationInfo, load_pairs, resolve_languages
from nlpkit.plugins.translation.decoder_only import DecoderOnlyBackend
from nlpkit.plugins.translation.seq2seq import Seq2SeqBackend
from nlpkit.report import md_table, save_figure
from nlpkit.task import Data, RunResults, Task

LENGTH_BUCKETS = [(1, 10), (11, 20), (21, 30), (31, 40), (41, 60), (61, 10**9)]  # source words
#: Raw columns that travel with the encoded examples to ``eval_step`` (ids for ordering, strings for metrics).
CARRIED = ("ref_id", "source", "target")


class TranslationTask(Task):
    """Sequence-to-sequence (or decoder-only) translation. Metrics: sacreBLEU, chrF, loss."""

    Config = TranslationConfig
    Info = TranslationInfo
    hub_task_type = "translation"
    usage_example = ["Hello, how are you?"]
    prediction_name = "translation"  # the output column of `nlpkit predict`
    # plain model folders (no nlpkit descriptor) that nlpkit.pipeline(folder) recognises as translators
    architectures = ("MTModel", "M2M100ForConditionalGeneration", "T5ForConditionalGeneration",
                     "MBartForConditionalGeneration")
    metric_names = ("bleu", "chrf", "loss", "copy_source_bleu", "length_ratio")
    cfg: TranslationConfig
    _backend: Backend | None = None

    @property
    def backend(self) -> Backend:
        """How the model runs (:class:`Seq2SeqBackend` or :class:`DecoderOnlyBackend`), chosen by build_model."""
        if self._backend is None:
            raise UsageError("The translation model is not built yet: call task.load_model(info) first.")
        return self._backend

    # ------------------------------------------------------------------ data
    def load_data(self) -> Data:
        return load_pairs(self.cfg, self.saved_info)

    def encode(self, batch: dict[str, list]) -> dict[str, list]:
        out = self.backend.encode(batch["source"], batch.get("target"))
        out.update({k: batch[k] for k in CARRIED if k in batch})
        return out

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = self.backend.collate(features)
        first = features[0]
        if "ref_id" in first:
            batch["ref_id"] = torch.tensor([f["ref_id"] for f in features])
        batch.update({k: [f[k] for f in features] for k in ("source", "target") if k in first})
        return batch

    # ------------------------------------------------------------------ model
    def build_model(self, info: TranslationInfo) -> None:
        """The from-scratch model (its tokenizer trained on ``info.train_texts``), a pretrained encoder-decoder,
        or a causal LM; ``info`` gets the language pair in force."""
        langs = resolve_languages(self.cfg.translation, info)
        info.source_lang, info.target_lang = langs.source, langs.target
        if self.cfg.model.name == SCRATCH:
            self._backend, self.model = Seq2SeqBackend.from_scratch(self.cfg, langs, info.train_texts,
                                                                    self.run_dir)
        else:
            path = resolve_model(self.cfg.model.name)
            kind = Seq2SeqBackend if is_encoder_decoder(path, self.cfg.model.trust_remote_code) else DecoderOnlyBackend
            self._backend, self.model = kind.load(self.cfg, langs, path)
        self.tokenizer = self.backend.tokenizer

    def callbacks(self) -> list[Callback]:
        # LoRA on a pretrained model: SEQ_2_SEQ_LM for an encoder-decoder, CAUSAL_LM for decoder-only translation
        lora.check_trainable(self.cfg)
        return [LoraAdapters(self.cfg.lora, task_type=None)] if self.cfg.train.lora else []

    def save(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Save the model (the LoRA adapter, or with ``lora.merge`` the merged plain model) + tokenizer."""
        if lora.is_peft_model(self.model) and self.cfg.lora.merge:
            self.model, state_dict = lora.merge_lora(self.model), None
        super().save(directory, state_dict=state_dict)

    def loss_items(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.backend.loss_items(batch)

    def loss(self, model: torch.nn.Module, batch: dict[str, Any],
             num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor:
        return self.backend.loss(model, batch, num_items_in_batch)

    def generate_kwargs(self, gen: GenerateConfig | None = None) -> dict[str, Any]:
        """The ``generate()`` options for ``gen`` (the run's decoding by default)."""
        return self.backend.generate_kwargs(gen or self.cfg.generate)

    # ------------------------------------------------------------------ evaluation
    def eval_step(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        nll, n_tokens = self.backend.nll(model, batch)
        # generate() lives on the bare model, not on the DDP/compile wrapper the loop hands us
        bare = extract_model_from_parallel(model, keep_torch_compile=False)
        hyps = self.backend.hypotheses(bare, batch, self.cfg.generate.replace(num_return_sequences=1))
        return {"ref_id": batch["ref_id"], "nll": nll, "n_tokens": n_tokens, "source": batch["source"],
                "reference": batch["target"], "hypothesis": hyps}

    def compute_metrics(self, outputs: dict[str, list]) -> dict[str, Any]:
        ids = outputs["ref_id"]
        if len(set(ids)) != len(ids):  # the gather must neither duplicate nor drop sentences
            raise RuntimeError(f"Evaluation saw {len(ids) - len(set(ids))} duplicated sentences.")
        hyps, refs = outputs["hypothesis"], outputs["reference"]
        tok = self.cfg.translation.bleu_tokenize
        bleu = compute("sacrebleu", predictions=hyps, references=refs, tokenize=tok)
        chrf = compute("chrf", predictions=hyps, references=refs)
        copy = compute("sacrebleu", predictions=outputs["source"], references=refs, tokenize=tok)
        n_tokens = sum(outputs["n_tokens"])
        return {
            "bleu": bleu["score"],
            "chrf": chrf["score"],
            "loss": float(sum(outputs["nll"]) / max(n_tokens, 1)),
            "copy_source_bleu": copy["score"],
            "length_ratio": bleu["sys_len"] / max(bleu["ref_len"], 1),
            "bleu_signature": bleu["signature"],
            "chrf_signature": chrf["signature"],
        }

    # ------------------------------------------------------------------ inference
    def predict(self, inputs: list[Any], batch_size: int = 64, **kwargs: Any) -> list[Any]:
        """Translations of ``inputs`` (strings), in input order; blank inputs give "".

        ``kwargs`` are decoding options (``num_beams``, ``max_new_tokens``, ``do_sample``, ...: the
        ``generate.*`` config keys), defaulting to the run's evaluation settings. Sources are sorted by
        length so each batch pads little; with ``num_return_sequences > 1`` each result is a list.
        """
        gen = self.cfg.generate.replace(**kwargs)
        todo = check_texts(inputs)
        n = gen.num_return_sequences
        results: list[Any] = [[""] * n if n > 1 else "" for _ in inputs]
        if todo:
            outs = self.backend.translate(self.model, [inputs[i] for i in todo], gen, batch_size)
            for i, texts in zip(todo, outs):
                results[i] = texts if n > 1 else texts[0]
        return results

    def prediction_input_column(self) -> str:
        """The column of a file that ``nlpkit predict`` translates: ``translation.source_column``, else ``source``."""
        return self.cfg.translation.source_column or "source"

    def export_spec(self) -> Any:
        """``nlpkit export``: the core's generator graphs (KV-cache decoding step, plus the encoder), checked by
        the greedy outputs on a few texts (:func:`nlpkit.onnx_generation.generator_export_spec`)."""
        from nlpkit.onnx_generation import generator_export_spec

        return generator_export_spec(
            self.model, ["Hello, how are you?", "a gripping, beautifully shot film", "dull and far too long", "ok"])

    def build_demo(self, pipe: Any) -> Any:
        """``nlpkit demo``: a source text -> its translation, with decoding options
        (:mod:`nlpkit.plugins.translation.demo`)."""
        from nlpkit.plugins.translation.demo import build_demo

        return build_demo(pipe)

    def serve_routes(self, server: Any) -> Any:
        """``nlpkit serve``: ``POST /v1/translate`` (:mod:`nlpkit.plugins.translation.serve`)."""
        from nlpkit.plugins.translation.serve import routes

        return routes(server)

    # ------------------------------------------------------------------ report
    def report_extras(self, run_dir: Path, results: RunResults) -> list[tuple[str, str]]:
        test, outputs = results.test or {}, results.test_outputs
        if not test or "hypothesis" not in outputs:
            return []
        ids, srcs, refs, hyps = (outputs[k] for k in ("ref_id", "source", "reference", "hypothesis"))
        scores = [
            ("sacreBLEU", round(test["bleu"], 2)),
            ("chrF", round(test["chrf"], 2)),
            ("copy-the-source baseline BLEU", round(test["copy_source_bleu"], 2)),
            ("hypothesis/reference length ratio", round(test["length_ratio"], 3)),
            ("sentences", test["samples"]),
            ("decoding", json.dumps(self.generate_kwargs())),
            ("BLEU signature", f"`{test['bleu_signature']}`"),
            ("chrF signature", f"`{test['chrf_signature']}`"),
        ]
        sections = [("Translation scores (test)", md_table(scores, ["", ""]))]
        # samples spread over the test split (ordered by ref id, i.e. the data order), not cherry-picked
        order = sorted(range(len(ids)), key=lambda k: ids[k])
        k = max(1, self.cfg.translation.report_samples)
        picks = order[:: max(1, len(order) // k)][:k]
        rows = [(srcs[i], refs[i], hyps[i]) for i in picks]
        sections.append(("Sample translations (test)", md_table(rows, ["source", "reference", "hypothesis"])))
        sections.append(self._bleu_by_length(run_dir, srcs, refs, hyps))
        return sections

    def _bleu_by_length(self, run_dir: Path, srcs: list[str], refs: list[str], hyps: list[str]) -> tuple[str, str]:
        """Corpus BLEU per source-length bucket (words), as a bar plot and a table."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = []
        for lo, hi in LENGTH_BUCKETS:
            idx = [i for i, s in enumerate(srcs) if lo <= len(s.split()) <= hi]
            if not idx:
                continue
            score = compute("sacrebleu", predictions=[hyps[i] for i in idx], references=[refs[i] for i in idx],
                            tokenize=self.cfg.translation.bleu_tokenize)["score"]
            rows.append((f"{lo}-{hi}" if hi < 10**9 else f"{lo}+", len(idx), round(score, 2)))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        bars = ax.bar([r[0] for r in rows], [r[2] for r in rows], color="tab:blue")
        for bar, r in zip(bars, rows):
            ax.annotate(f"n={r[1]}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=8)
        ax.set_xlabel("source length (words)")
        ax.set_ylabel("sacreBLEU")
        ax.set_title("Test BLEU by source length")
        save_figure(fig, run_dir / "bleu_by_length.png")
        table = md_table(rows, ["source words", "sentences", "BLEU"])
        return "BLEU by source length (test)", f"![BLEU by source length](bleu_by_length.png)\n\n{table}"
