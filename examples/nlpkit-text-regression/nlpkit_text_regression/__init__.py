"""Text regression for nlpkit: predict a real-valued score from a text (review -> rating, essay -> grade)."""

from nlpkit_text_regression.task import TextRegressionConfig, TextRegressionInfo, TextRegressionTask

__all__ = ["TextRegressionConfig", "TextRegressionInfo", "TextRegressionTask"]
