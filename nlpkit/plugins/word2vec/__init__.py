"""The word2vec task: gensim ``Word2Vec`` / ``FastText`` word vectors, trained by its own gensim trainer."""

from nlpkit.plugins.word2vec.config import Word2VecConfig, check_config
from nlpkit.plugins.word2vec.task import Word2VecTask
from nlpkit.plugins.word2vec.vectors import UnknownWordError

__all__ = ["UnknownWordError", "Word2VecConfig", "Word2VecTask", "check_config"]
