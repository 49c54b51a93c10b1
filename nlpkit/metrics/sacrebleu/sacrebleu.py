"""nlpkit sacreBLEU: corpus BLEU from the `sacrebleu` package, a local `evaluate` module."""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = """
Corpus-level BLEU computed by the `sacrebleu` package (Post, 2018), which tokenizes internally so scores are
comparable across papers; the `signature` string records every setting that affects the number and should be
reported next to the score. Each prediction may have one reference (a string) or several (a list of strings);
when the number of references varies between predictions, the missing ones are padded with None, which
sacreBLEU ignores.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): system outputs, detokenized.
    references (`list` of `str`, or `list` of `list` of `str`): one reference or several per prediction.
    tokenize (`str`, optional): sacreBLEU tokenizer: "13a" (default), "intl", "zh", "ja-mecab", "char",
        "none", ...
    lowercase (`bool`, default False): compare lowercased text.
    smooth_method (`str`, default "exp"): "none", "floor", "add-k" or "exp".
    smooth_value (`float`, optional): the parameter of "floor" / "add-k" smoothing.
    force (`bool`, default False): score even if the input looks tokenized already.
    use_effective_order (`bool`, default False): ignore n-gram orders without matches (sentence-level BLEU).
Returns:
    score (`float`): BLEU in [0, 100].
    signature (`str`): sacreBLEU's settings signature,
        e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0".
    counts, totals (`list` of `int`): matching / total n-grams for n = 1..4.
    precisions (`list` of `float`): n-gram precisions in percent.
    bp (`float`): brevity penalty.
    sys_len, ref_len (`int`): hypothesis and effective reference lengths in tokens.
Examples:
    >>> bleu = nlpkit.metrics.load_metric("sacrebleu")
    >>> bleu.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat"])["score"]
    100.00000000000004
"""

_CITATION = """
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    address = "Belgium, Brussels",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""


def _reference_streams(references: list) -> list[list[str | None]]:
    """Per-prediction references -> sacreBLEU's per-reference streams (ragged lists padded with None)."""
    per_prediction = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    n_refs = max((len(refs) for refs in per_prediction), default=0)
    if n_refs == 0:
        raise ValueError("sacrebleu: every prediction has an empty reference list")
    return [[refs[i] if i < len(refs) else None for refs in per_prediction] for i in range(n_refs)]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Sacrebleu(evaluate.Metric):
    """Corpus BLEU with its sacreBLEU signature."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            homepage="https://github.com/mjpost/sacreBLEU",
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
            reference_urls=["https://github.com/mjpost/sacreBLEU#how-to-use-sacrebleu"],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list,
        tokenize: str | None = None,
        lowercase: bool = False,
        smooth_method: str = "exp",
        smooth_value: float | None = None,
        force: bool = False,
        use_effective_order: bool = False,
    ) -> dict:
        if len(predictions) == 0:
            raise ValueError("sacrebleu: no predictions were given")
        bleu = sacrebleu.BLEU(
            lowercase=lowercase,
            force=force,
            tokenize=tokenize,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            effective_order=use_effective_order,
        )
        result = bleu.corpus_score(predictions, _reference_streams(references))
        return {
            "score": float(result.score),
            "signature": str(bleu.get_signature()),
            "counts": [int(c) for c in result.counts],
            "totals": [int(t) for t in result.totals],
            "precisions": [float(p) for p in result.precisions],
            "bp": float(result.bp),
            "sys_len": int(result.sys_len),
            "ref_len": int(result.ref_len),
        }
