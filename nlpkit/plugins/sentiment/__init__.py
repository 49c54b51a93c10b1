"""The sentiment task (any single-label text classification): ``AutoModelForSequenceClassification``."""

from nlpkit.plugins.sentiment.task import SentimentConfig, SentimentTask

__all__ = ["SentimentConfig", "SentimentTask"]
