"""nlpkit accuracy: the fraction of predictions equal to their reference label (a local `evaluate` module)."""

import datasets
import evaluate

_DESCRIPTION = """
Accuracy is the proportion of predictions that equal their reference:
accuracy = (number of correct predictions) / (number of predictions).
Labels may be integers or strings (both sides must use the same kind).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int` or `str`): predicted labels.
    references (`list` of `int` or `str`): reference (gold) labels, same length as `predictions`.
    sample_weight (`list` of `float`, optional): per-example weights; defaults to equal weights.
Returns:
    accuracy (`float`): in [0, 1]; 1.0 means every prediction is correct.
Examples:
    >>> acc = nlpkit.metrics.load_metric("accuracy")
    >>> acc.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'accuracy': 0.75}
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O.
          and Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A.
          and Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    """Classification accuracy over integer or string labels."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # String labels are tried first: an int option would silently turn "1" into 1.
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
                ),
                datasets.Features(
                    {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
                ),
            ],
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"
            ],
        )

    def _compute(
        self, predictions: list, references: list, sample_weight: list[float] | None = None
    ) -> dict[str, float]:
        if len(predictions) == 0:
            raise ValueError("accuracy: no predictions were given")
        if sample_weight is None:
            sample_weight = [1.0] * len(predictions)
        if len(sample_weight) != len(predictions):
            raise ValueError(
                f"accuracy: sample_weight has {len(sample_weight)} values for {len(predictions)} predictions"
            )
        total = float(sum(sample_weight))
        correct = sum(w for p, r, w in zip(predictions, references, sample_weight, strict=True) if p == r)
        return {"accuracy": float(correct / total)}
