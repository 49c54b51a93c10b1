"""nlpkit average precision (area under the precision-recall curve), a local `evaluate` module over
scikit-learn."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import average_precision_score

_DESCRIPTION = """
Average precision (AP), the area under the precision-recall curve, from scikit-learn's
`average_precision_score`, computed from scores (probabilities), not from decisions: it says how well the model
ranks the examples of a class above the others whatever the threshold. For imbalanced classes it is more
telling than ROC-AUC (chance level is the class's frequency, not 0.5).

Single-label: each example has one reference class id and a score per class (one-vs-rest for every class).
Multi-label: each reference is a multi-hot row. The result has one AP per class plus the macro (mean over
classes that occur in the references) and micro (all decisions pooled) averages.
"""

_KWARGS_DESCRIPTION = """
Args:
    prediction_scores (`list` of `list` of `float`): a score per class for every example (probabilities).
    references (`list` of `int`, or `list` of `list` of 0/1 `int`): class ids, or multi-hot rows.
Returns:
    average_precision (`list` of `float` or None): AP of each class (None where the class never occurs),
    macro_average_precision (`float`), micro_average_precision (`float`)
Examples:
    >>> ap = nlpkit.metrics.load_metric("average_precision")
    >>> ap.compute(prediction_scores=[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], references=[0, 1, 1])["average_precision"]
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
class AveragePrecision(evaluate.Metric):
    """Per-class, macro and micro average precision from per-class scores."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"prediction_scores": datasets.Sequence(datasets.Value("float32")),
                                   "references": datasets.Value("int64")}),
                datasets.Features({"prediction_scores": datasets.Sequence(datasets.Value("float32")),
                                   "references": datasets.Sequence(datasets.Value("int64"))}),
            ],
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.average_precision_score.html"
            ],
        )

    def _compute(self, prediction_scores: list, references: list) -> dict[str, object]:
        if len(prediction_scores) == 0:
            raise ValueError("average_precision: no scores were given")
        scores, refs = np.asarray(prediction_scores, dtype=np.float64), np.asarray(references)
        if refs.ndim == 1:  # class ids -> one-vs-rest indicator rows
            refs = np.eye(scores.shape[1], dtype=np.int64)[refs]
        per_class: list[float | None] = []
        for j in range(scores.shape[1]):
            positives = refs[:, j].sum()
            per_class.append(float(average_precision_score(refs[:, j], scores[:, j])) if positives else None)
        present = [v for v in per_class if v is not None]
        return {
            "average_precision": per_class,
            "macro_average_precision": float(np.mean(present)) if present else 0.0,
            "micro_average_precision": float(average_precision_score(refs.ravel(), scores.ravel()))
            if refs.any() else 0.0,
        }
