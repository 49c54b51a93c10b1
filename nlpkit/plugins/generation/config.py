"""The generation task's config: data formats, LoRA, decoding, and the CPU-sized defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nlpkit.config import DataConfig, GenerateConfig, ModelConfig, RunConfig, TrainConfig, opt
from nlpkit.errors import ConfigError

#: Values of ``data.format``.
FORMATS = ("auto", "text", "prompt_response", "chat")


@dataclass
class GenerationDataConfig(DataConfig):
    format: str = opt("auto", "How rows become training examples: `text` (tokenize, pack into blocks of "
                              "block_size, EOS between documents), `prompt_response` (loss on the response only), "
                              "`chat` (a messages list in the tokenizer's chat template, loss on assistant "
                              "replies), or `auto` (chat if there is a messages column, prompt_response if prompt "
                              "and response columns, else text).")
    block_size: int = opt(256, "Tokens per packed block (format=text).")
    prompt_column: str = opt("prompt", "Prompt column (format=prompt_response).")
    response_column: str = opt("response", "Response column (format=prompt_response).")
    messages_column: str = opt("messages", "Column with a list of {role, content} messages (format=chat).")
    use_chat_template: bool = opt(False, "format=prompt_response: render each pair as a user/assistant chat "
                                         "with the tokenizer's chat template.")
    packing: bool = opt(False, "format=prompt_response or chat: pack several examples into each row of up to "
                               "max_length tokens (first-fit, longest first), with position ids restarting at 0 "
                               "per example so that no attention and no loss crosses an example boundary; less "
                               "padding, faster training, the same loss. Rows are then the batch items "
                               "(train.batch_size counts rows).")
    max_eval_tokens: Optional[int] = opt(None, "format=text: score at most this many tokens of each validation/"
                                               "test split, as an equal window from the middle of every "
                                               "held-out document (all held-out plays count; faster on CPU).")


@dataclass
class GenerationTrainConfig(TrainConfig):
    """The shared training options (``train.lora`` included); a separate class so the task's defaults stay
    one place."""


@dataclass
class GenerationGenerateConfig(GenerateConfig):
    """The shared decoding options plus what only prompt continuation uses (stop strings, seed, batching)."""

    stop: list[str] = opt(help="Stop strings: output ends just before the first one.", factory=list)
    seed: Optional[int] = opt(None, "Seed for sampling (same prompts and batch size -> same outputs).")
    batch_size: int = opt(16, "Prompts generated together (left-padded, sorted by length).")
    chat_template: bool = opt(False, "Wrap each prompt as a user message in the tokenizer's chat template.")

    def validate(self) -> None:
        super().validate()
        if self.batch_size < 1:
            raise ConfigError(f"generate.batch_size={self.batch_size!r}: must be at least 1.")


@dataclass
class GenerationConfig(RunConfig):
    task: str = opt("generation", "Task name (set by the launch script).")
    model: ModelConfig = opt(help="Causal LM to fine-tune (model.name: a catalog name, a hub id such as gpt2, a "
                                  "local folder, or a previous run) and how it is loaded.",
                             factory=lambda: ModelConfig(name="smollm2-135m"))
    sample_prompts: list[str] = opt(help="Prompts continued before and after training for the report.",
                                    factory=lambda: ["ROMEO.\n", "KING.\nMy lords,", "To be, or not to be",
                                                     "Once upon a time"])
    data: GenerationDataConfig = opt(help="Data options.", factory=lambda: GenerationDataConfig(
        source="shakespeare", split_by="play", test_size=3, validation_size=2, max_length=512, block_size=256,
        max_eval_tokens=4096))
    # Sized for a 2-core CPU (about 15-25 s per 1k-token update): 50 updates of 4 x 256 tokens at a high
    # learning rate adapt the model to Shakespeare's style in about a quarter of an hour.
    train: GenerationTrainConfig = opt(help="Training options.", factory=lambda: GenerationTrainConfig(
        full_lr=1e-4, max_steps=50, batch_size=4, eval_batch_size=4, warmup_ratio=0.1, scheduler="cosine",
        log_every=5, metric_for_best="perplexity", greater_is_better=False))
    generate: GenerationGenerateConfig = opt(help="Decoding options for samples and the pipeline.",
                                             factory=lambda: GenerationGenerateConfig(max_new_tokens=48))
