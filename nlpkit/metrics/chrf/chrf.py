"""nlpkit chrF / chrF++: character n-gram F-score from the `sacrebleu` package, a local `evaluate` module."""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = """
chrF (Popović, 2015) is an F-score over character n-grams (by default up to 6, recall weighted twice as
much as precision: beta=2), computed at corpus level by the `sacrebleu` package. chrF++ (Popović, 2017) also
counts word n-grams: pass `word_order=2`. It needs no tokenization and is more robust than BLEU for
morphologically rich languages and small test sets. Each prediction may have one reference or several
(ragged lists are padded with None, which sacreBLEU ignores).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): system outputs.
    references (`list` of `str`, or `list` of `list` of `str`): one reference or several per prediction.
    char_order (`int`, default 6): character n-gram order.
    word_order (`int`, default 0): word n-gram order; 2 gives chrF++.
    beta (`int`, default 2): recall is weighted beta times as much as precision.
    lowercase (`bool`, default False): compare lowercased text.
    whitespace (`bool`, default False): keep whitespace inside character n-grams.
    eps_smoothing (`bool`, default False): use the epsilon smoothing of the original chrF++.py / NLTK / Moses
        instead of sacreBLEU's effective-order default.
Returns:
    score (`float`): chrF in [0, 100].
    signature (`str`): sacreBLEU's settings signature,
        e.g. "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0".
    char_order, word_order, beta (`int`): the settings used.
Examples:
    >>> chrf = nlpkit.metrics.load_metric("chrf")
    >>> chrf.compute(predictions=["the cat sat"], references=["the cat sat"])["score"]
    100.0
"""

_CITATION = """
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    address = "Lisbon, Portugal",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W15-3049",
    pages = "392--395",
}
@inproceedings{popovic-2017-chrf,
    title = "chr{F}++: words helping character n-grams",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Second Conference on Machine Translation",
    year = "2017",
    address = "Copenhagen, Denmark",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W17-4770",
    pages = "612--618",
}
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""


def _reference_streams(references: list) -> list[list[str | None]]:
    """Per-prediction references -> sacreBLEU's per-reference streams (ragged lists padded with None)."""
    per_prediction = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    n_refs = max((len(refs) for refs in per_prediction), default=0)
    if n_refs == 0:
        raise ValueError("chrf: every prediction has an empty reference list")
    return [[refs[i] if i < len(refs) else None for refs in per_prediction] for i in range(n_refs)]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(evaluate.Metric):
    """Corpus chrF / chrF++ with its sacreBLEU signature."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            homepage="https://github.com/mjpost/sacreBLEU#chrf--chrf",
            # One reference per prediction is tried first: a string must not be read as a list of chars.
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
            ],
            codebase_urls=["https://github.com/mjpost/sacreBLEU"],
            reference_urls=["https://aclanthology.org/W15-3049", "https://aclanthology.org/W17-4770"],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list,
        char_order: int = 6,
        word_order: int = 0,
        beta: int = 2,
        lowercase: bool = False,
        whitespace: bool = False,
        eps_smoothing: bool = False,
    ) -> dict:
        if len(predictions) == 0:
            raise ValueError("chrf: no predictions were given")
        chrf = sacrebleu.CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        result = chrf.corpus_score(predictions, _reference_streams(references))
        return {
            "score": float(result.score),
            "signature": str(chrf.get_signature()),
            "char_order": int(result.char_order),
            "word_order": int(result.word_order),
            "beta": int(result.beta),
        }
