"""nlpkit precision / recall / F1 (macro-averaged by default), a local `evaluate` module over scikit-learn."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import precision_recall_fscore_support

_DESCRIPTION = """
Precision, recall and F1 from scikit-learn's `precision_recall_fscore_support`, macro-averaged by default
(every class counts equally, whatever its frequency). Classes without predicted or gold examples score 0
(`zero_division=0`) instead of warning. Labels may be integers or strings.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int` or `str`): predicted labels.
    references (`list` of `int` or `str`): reference (gold) labels.
    average (`str` or `None`, default "macro"): "macro", "micro", "weighted", "binary" (needs `pos_label`)
        or None for one value per class (lists, in the order of `labels`).
    labels (`list`, optional): the classes to average over, and their order when `average=None`;
        defaults to the sorted union of labels seen in predictions and references. Giving the full label
        set matters for macro averages when a class is absent from a small evaluation set.
    pos_label (`int` or `str`, default 1): the positive class for `average="binary"`.
    zero_division (`float`, default 0): the value used where a ratio has a zero denominator.
Returns:
    precision (`float`, or `list` of `float` when average=None)
    recall (`float`, or `list` of `float` when average=None)
    f1 (`float`, or `list` of `float` when average=None)
Examples:
    >>> prf = nlpkit.metrics.load_metric("precision_recall_f1")
    >>> prf.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'precision': 0.75, 'recall': 0.75, 'f1': 0.6666666666666666}
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


def _to_python(value: object) -> float | list[float]:
    """Turn a numpy scalar or array into a float or a list of floats (JSON-friendly)."""
    if isinstance(value, np.ndarray):
        return [float(v) for v in value]
    return float(value)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PrecisionRecallF1(evaluate.Metric):
    """Precision, recall and F1, macro-averaged by default."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
                ),
                datasets.Features(
                    {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
                ),
            ],
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_recall_fscore_support.html"
            ],
        )

    def _compute(
        self,
        predictions: list,
        references: list,
        average: str | None = "macro",
        labels: list | None = None,
        pos_label: int | str = 1,
        zero_division: float = 0,
    ) -> dict[str, float | list[float]]:
        if len(predictions) == 0:
            raise ValueError("precision_recall_f1: no predictions were given")
        precision, recall, f1, _ = precision_recall_fscore_support(
            references,
            predictions,
            labels=labels,
            pos_label=pos_label,
            average=average,
            zero_division=zero_division,
        )
        return {"precision": _to_python(precision), "recall": _to_python(recall), "f1": _to_python(f1)}
