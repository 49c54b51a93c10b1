"""nlpkit balanced accuracy, a local `evaluate` module over scikit-learn."""

import datasets
import evaluate
from sklearn.metrics import balanced_accuracy_score

_DESCRIPTION = """
Balanced accuracy: the mean of the recalls of the classes, from scikit-learn's `balanced_accuracy_score`. Every
class counts equally, so a model that ignores a rare class scores low even when plain accuracy is high (always
predicting the majority class of a 95/5 split gives accuracy 0.95 but balanced accuracy 0.5). Classes that never
occur in the references are left out of the mean. Labels may be integers or strings.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int` or `str`): predicted labels.
    references (`list` of `int` or `str`): reference (gold) labels.
    adjusted (`bool`, default False): rescale so that chance scores 0 and perfect scores 1.
Returns:
    balanced_accuracy (`float`)
Examples:
    >>> ba = nlpkit.metrics.load_metric("balanced_accuracy")
    >>> ba.compute(predictions=[0, 0, 0, 0], references=[0, 0, 0, 1])
    {'balanced_accuracy': 0.5}
"""

_CITATION = """
@inproceedings{brodersen2010balanced,
  title={The balanced accuracy and its posterior distribution},
  author={Brodersen, K. H. and Ong, C. S. and Stephan, K. E. and Buhmann, J. M.},
  booktitle={20th International Conference on Pattern Recognition},
  pages={3121--3124},
  year={2010}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BalancedAccuracy(evaluate.Metric):
    """Mean per-class recall."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.balanced_accuracy_score.html"
            ],
        )

    def _compute(self, predictions: list, references: list, adjusted: bool = False) -> dict[str, float]:
        if len(predictions) == 0:
            raise ValueError("balanced_accuracy: no predictions were given")
        return {"balanced_accuracy": float(balanced_accuracy_score(references, predictions, adjusted=adjusted))}
