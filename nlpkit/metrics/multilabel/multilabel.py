"""nlpkit multi-label metrics (micro/macro/samples F1, subset accuracy, Hamming loss), a local `evaluate` module
over scikit-learn."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support

_DESCRIPTION = """
Metrics of multi-label classification, where each example has any number of labels, given as multi-hot rows
(one 0/1 slot per label):

- micro precision / recall / F1: counted over every (example, label) decision (frequent labels weigh more);
- macro F1: the mean of the per-label F1 scores (every label counts equally);
- samples F1: the F1 of each example's predicted label set against its true set, averaged over examples;
- weighted F1: per-label F1 weighted by each label's support;
- subset accuracy: the share of examples whose predicted label set is exactly right (strict);
- Hamming loss: the share of wrong (example, label) decisions (lower is better).

From scikit-learn's `precision_recall_fscore_support`, `accuracy_score` and `hamming_loss`. Ratios with a zero
denominator score 0, except in the samples average: an example with no true label and no predicted label is
exactly right and scores 1 there (with 0, every correctly empty prediction would count as a miss).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of 0/1 `int`): predicted multi-hot rows.
    references (`list` of `list` of 0/1 `int`): reference multi-hot rows, same width.
Returns:
    micro_precision, micro_recall, micro_f1, macro_f1, samples_f1, weighted_f1, subset_accuracy,
    hamming_loss (`float`)
Examples:
    >>> ml = nlpkit.metrics.load_metric("multilabel")
    >>> ml.compute(predictions=[[1, 0], [1, 1]], references=[[1, 0], [0, 1]])["subset_accuracy"]
    0.5
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
class Multilabel(evaluate.Metric):
    """Micro/macro/samples F1, subset accuracy and Hamming loss of multi-hot predictions."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64")),
                                        "references": datasets.Sequence(datasets.Value("int64"))}),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html#multilabel-ranking-metrics"],
        )

    def _compute(self, predictions: list, references: list) -> dict[str, float]:
        if len(predictions) == 0:
            raise ValueError("multilabel: no predictions were given")
        preds, refs = np.asarray(predictions), np.asarray(references)
        if preds.ndim != 2 or preds.shape != refs.shape:
            raise ValueError(f"multilabel: predictions {preds.shape} and references {refs.shape} must be multi-hot "
                             f"rows of one width")
        out: dict[str, float] = {}
        for average in ("micro", "macro", "samples", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(refs, preds, average=average,
                                                         zero_division=1 if average == "samples" else 0)
            out[f"{average}_f1"] = float(f)
            if average == "micro":
                out.update(micro_precision=float(p), micro_recall=float(r))
        out["subset_accuracy"] = float(accuracy_score(refs, preds))  # exact match of the whole label set
        out["hamming_loss"] = float(hamming_loss(refs, preds))
        return out
