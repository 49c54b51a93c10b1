"""nlpkit confusion matrix, a local `evaluate` module over scikit-learn."""

import datasets
import evaluate
from sklearn.metrics import confusion_matrix

_DESCRIPTION = """
The confusion matrix C, where C[i][j] counts examples whose reference is label i and whose prediction is
label j (rows = truth, columns = prediction, as in scikit-learn). Row/column order follows `labels` when
given, else the sorted union of labels seen. Labels may be integers or strings.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int` or `str`): predicted labels.
    references (`list` of `int` or `str`): reference (gold) labels.
    labels (`list`, optional): the label order of rows and columns; labels not listed are left out.
        Pass the full label set so the shape does not depend on which classes a batch happens to contain.
    normalize (`str`, optional): None (counts), "true" (rows sum to 1), "pred" (columns sum to 1) or "all".
Returns:
    confusion_matrix (`list` of `list`): ints, or floats when `normalize` is set.
    labels (`list`): the label of each row/column, in order.
Examples:
    >>> cm = nlpkit.metrics.load_metric("confusion_matrix")
    >>> cm.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'confusion_matrix': [[1, 1], [0, 1]], 'labels': [0, 1]}
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
class ConfusionMatrix(evaluate.Metric):
    """Confusion matrix with a caller-chosen label order."""

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
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.confusion_matrix.html"
            ],
        )

    def _compute(
        self,
        predictions: list,
        references: list,
        labels: list | None = None,
        normalize: str | None = None,
    ) -> dict[str, list]:
        if len(predictions) == 0:
            raise ValueError("confusion_matrix: no predictions were given")
        if labels is None:
            labels = sorted(set(references) | set(predictions))
        matrix = confusion_matrix(references, predictions, labels=labels, normalize=normalize)
        cast = float if normalize else int
        return {
            "confusion_matrix": [[cast(v) for v in row] for row in matrix],
            "labels": [label.item() if hasattr(label, "item") else label for label in labels],
        }
