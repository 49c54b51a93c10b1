"""nlpkit word-similarity correlation (WordSim353, SimLex-999, ...), a local `evaluate` module over scipy."""

import math

import datasets
import evaluate
from scipy.stats import pearsonr, spearmanr

_DESCRIPTION = """
How well a model's word-pair similarities (e.g. cosine of word vectors) agree with human ratings, as
Spearman's rank correlation (the usual headline number) and Pearson's correlation. Pairs the model cannot
score (a word out of vocabulary) are given as NaN (or None): they are left out of the correlations and
counted in `oov_rate`, as gensim's `evaluate_word_pairs` does with `dummy4unknown=False`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): the model's similarity per pair; NaN or None when a word is OOV.
    references (`list` of `float`): the human similarity score per pair.
Returns:
    spearman (`float`): Spearman's rho over the scored pairs (NaN if fewer than 2 pairs or constant input).
    pearson (`float`): Pearson's r over the scored pairs (NaN likewise).
    oov_rate (`float`): fraction of pairs left out as OOV.
    pairs (`int`): number of pairs scored (the correlations are computed on these).
Examples:
    >>> sim = nlpkit.metrics.load_metric("word_similarity")
    >>> sim.compute(predictions=[0.1, 0.5, float("nan"), 0.9], references=[1.0, 2.0, 5.0, 4.0])
    {'spearman': 1.0, 'pearson': 0.9819805060619655, 'oov_rate': 0.25, 'pairs': 3}
"""

_CITATION = """
@inproceedings{finkelstein2001placing,
  title={Placing search in context: The concept revisited},
  author={Finkelstein, Lev and Gabrilovich, Evgeniy and Matias, Yossi and Rivlin, Ehud and Solan, Zach
          and Wolfman, Gadi and Ruppin, Eytan},
  booktitle={Proceedings of the 10th international conference on World Wide Web},
  pages={406--414},
  year={2001}
}
@article{hill2015simlex,
  title={{SimLex-999}: Evaluating semantic models with (genuine) similarity estimation},
  author={Hill, Felix and Reichart, Roi and Korhonen, Anna},
  journal={Computational Linguistics},
  volume={41},
  number={4},
  pages={665--695},
  year={2015}
}
"""


def _is_missing(value: float | None) -> bool:
    """True for None or NaN (an out-of-vocabulary pair)."""
    return value is None or math.isnan(value)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WordSimilarity(evaluate.Metric):
    """Spearman / Pearson correlation of model similarities with human ratings, skipping OOV pairs."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            reference_urls=[
                "https://radimrehurek.com/gensim/models/keyedvectors.html#gensim.models.keyedvectors.KeyedVectors.evaluate_word_pairs"
            ],
        )

    def _compute(self, predictions: list[float | None], references: list[float]) -> dict[str, float | int]:
        total = len(predictions)
        if total == 0:
            raise ValueError("word_similarity: no pairs were given")
        kept = [
            (p, r)
            for p, r in zip(predictions, references, strict=True)
            if not _is_missing(p) and not _is_missing(r)
        ]
        spearman = pearson = math.nan
        if len(kept) >= 2:
            model, human = [p for p, _ in kept], [r for _, r in kept]
            # Constant input has no defined correlation: scipy warns and returns NaN, which we keep.
            if len(set(model)) > 1 and len(set(human)) > 1:
                spearman = float(spearmanr(model, human).statistic)
                pearson = float(pearsonr(model, human).statistic)
        return {
            "spearman": spearman,
            "pearson": pearson,
            "oov_rate": (total - len(kept)) / total,
            "pairs": len(kept),
        }
