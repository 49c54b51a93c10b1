"""nlpkit per-class precision / recall / F1 / support, a local `evaluate` module over scikit-learn."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import precision_recall_fscore_support

_DESCRIPTION = """
Precision, recall, F1 and support (the number of reference examples) of every class, from scikit-learn's
`precision_recall_fscore_support(average=None)`: the table behind macro averages, where a rare class that the
model misses shows up as a row of zeros. Works for single-label predictions (one class id per example) and for
multi-label ones (one 0/1 row per example, a slot per label). Ratios with a zero denominator score 0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`, or `list` of `list` of 0/1 `int`): predicted class ids, or multi-hot rows.
    references (same form as predictions): reference class ids, or multi-hot rows.
    labels (`list` of `int`, optional): single-label only: the classes, in row order (pass every class so that
        one absent from a small evaluation set still gets its row). Multi-hot rows give one row per slot.
Returns:
    precision, recall, f1 (`list` of `float`), support (`list` of `int`): one value per class, in order.
Examples:
    >>> pc = nlpkit.metrics.load_metric("per_class")
    >>> pc.compute(predictions=[0, 1, 1], references=[0, 1, 0], labels=[0, 1])
    {'precision': [1.0, 0.5], 'recall': [0.5, 1.0], 'f1': [0.6666666666666666, 0.6666666666666666], 'support': [2, 1]}
    >>> pc.compute(predictions=[[1, 0], [1, 1]], references=[[1, 0], [0, 1]])["recall"]
    [1.0, 1.0]
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
class PerClass(evaluate.Metric):
    """Precision, recall, F1 and support of every class (single-label ids or multi-hot rows)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64")),
                                   "references": datasets.Sequence(datasets.Value("int64"))}),
            ],
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_recall_fscore_support.html"
            ],
        )

    def _compute(self, predictions: list, references: list, labels: list | None = None) -> dict[str, list]:
        if len(predictions) == 0:
            raise ValueError("per_class: no predictions were given")
        preds, refs = np.asarray(predictions), np.asarray(references)
        if preds.ndim == 2:  # multi-hot rows: every slot is a label
            labels = None
        precision, recall, f1, support = precision_recall_fscore_support(
            refs, preds, labels=labels, average=None, zero_division=0)
        return {"precision": [float(v) for v in precision], "recall": [float(v) for v in recall],
                "f1": [float(v) for v in f1], "support": [int(v) for v in support]}
