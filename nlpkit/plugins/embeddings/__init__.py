"""The embeddings task (sentence embeddings for search and retrieval): an encoder + pooling fine-tuned on pairs."""

from nlpkit.plugins.embeddings.task import EmbeddingsConfig, EmbeddingsInfo, EmbeddingsTask

__all__ = ["EmbeddingsConfig", "EmbeddingsInfo", "EmbeddingsTask"]
