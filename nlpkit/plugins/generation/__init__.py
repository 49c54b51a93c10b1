"""The generation task: causal-LM fine-tuning (full or LoRA), perplexity, sample continuations, ``nlpkit generate``."""

from nlpkit.plugins.generation.config import GenerationConfig
from nlpkit.plugins.generation.task import GenerationTask

__all__ = ["GenerationConfig", "GenerationTask"]
