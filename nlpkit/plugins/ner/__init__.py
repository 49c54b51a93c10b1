"""The ner task (named-entity recognition, token classification): ``AutoModelForTokenClassification``."""

from nlpkit.plugins.ner.task import NerConfig, NerDataConfig, NerInfo, NerTask

__all__ = ["NerConfig", "NerDataConfig", "NerInfo", "NerTask"]
