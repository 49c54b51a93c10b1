"""The sentiment task (any text classification, single- or multi-label): ``AutoModelForSequenceClassification``."""

from nlpkit.plugins.sentiment.task import SentimentConfig, SentimentInfo, SentimentTask

__all__ = ["SentimentConfig", "SentimentInfo", "SentimentTask"]
