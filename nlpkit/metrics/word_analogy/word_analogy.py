"""nlpkit word-analogy accuracy (Google analogies "a : b :: c : ?"), a local `evaluate` module."""

import datasets
import evaluate

_DESCRIPTION = """
Accuracy on word analogies (Mikolov et al., 2013): for each question "a is to b as c is to ?" the model
predicts one word (e.g. the nearest vector to b - a + c, excluding a, b and c). A question the model cannot
answer because a word is out of vocabulary has the prediction "" (or None). `accuracy` is measured over the
answered questions only (what gensim's `evaluate_word_analogies` reports); `accuracy_all` counts unanswered
questions as wrong, which is fairer when comparing models with different vocabularies.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the predicted word per question; "" or None when the question was skipped.
    references (`list` of `str`): the expected word per question.
    ignore_case (`bool`, default True): compare case-insensitively (the analogy files mix cases; gensim
        compares upper-cased words by default).
Returns:
    accuracy (`float`): correct / answered (0.0 when nothing was answered).
    accuracy_all (`float`): correct / all questions.
    oov_rate (`float`): unanswered / all questions.
    questions (`int`): number of questions.
    answered (`int`): number of questions answered.
Examples:
    >>> ana = nlpkit.metrics.load_metric("word_analogy")
    >>> ana.compute(
    ...     predictions=["queen", "", "paris", "rome"], references=["queen", "berlin", "Paris", "madrid"]
    ... )
    {'accuracy': 0.6666666666666666, 'accuracy_all': 0.5, 'oov_rate': 0.25, 'questions': 4, 'answered': 3}
"""

_CITATION = """
@article{mikolov2013efficient,
  title={Efficient estimation of word representations in vector space},
  author={Mikolov, Tomas and Chen, Kai and Corrado, Greg and Dean, Jeffrey},
  journal={arXiv preprint arXiv:1301.3781},
  year={2013}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WordAnalogy(evaluate.Metric):
    """Analogy accuracy over answered questions and over all questions."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=[
                "https://radimrehurek.com/gensim/models/keyedvectors.html#gensim.models.keyedvectors.KeyedVectors.evaluate_word_analogies"
            ],
        )

    def _compute(
        self, predictions: list[str | None], references: list[str], ignore_case: bool = True
    ) -> dict[str, float | int]:
        total = len(predictions)
        if total == 0:
            raise ValueError("word_analogy: no questions were given")

        def norm(word: str) -> str:
            return word.casefold() if ignore_case else word

        answered = [(p, r) for p, r in zip(predictions, references, strict=True) if p]
        correct = sum(norm(p) == norm(r) for p, r in answered)
        return {
            "accuracy": correct / len(answered) if answered else 0.0,
            "accuracy_all": correct / total,
            "oov_rate": (total - len(answered)) / total,
            "questions": total,
            "answered": len(answered),
        }
