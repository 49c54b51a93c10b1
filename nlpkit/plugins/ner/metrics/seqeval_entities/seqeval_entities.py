"""nlpkit entity-level precision / recall / F1 (seqeval), a local `evaluate` module shipped by the ner plugin."""

import datasets
import evaluate
from seqeval.metrics import accuracy_score, classification_report
from seqeval.scheme import BILOU, IOB1, IOB2, IOBES

_DESCRIPTION = """
Entity-level precision, recall and F1 of tag sequences, computed by seqeval: an entity counts as found only when
its type and its first and last tokens are all right. Two modes, as seqeval has them:

* default (the conlleval script of the CoNLL shared tasks): an `I-TYPE` that follows `O` or another type opens an
  entity, so a prediction that starts an entity with `I-` still scores;
* strict (`mode="strict"`, with a `scheme`): only the chunks the scheme allows are entities; a chunk that breaks
  the scheme (an `I-` opening an entity in IOB2) is not an entity at all.

Also the token accuracy (tags equal, `O` included) and, per entity type, precision, recall, F1 and the number of
reference entities (support).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): predicted tags of every sentence.
    references (`list` of `list` of `str`): reference tags, one per predicted tag.
    mode (`str`, optional): None (default: conlleval semantics) or "strict".
    scheme (`str`, optional): the tag scheme of strict mode: IOB2 (default), IOB1, IOBES or BILOU.
Returns:
    precision, recall, f1 (`float`): micro averages over entities; accuracy (`float`): token accuracy;
    macro_f1 (`float`): the mean of the per-type F1; per_type (`dict`): type -> precision, recall, f1, support.
Examples:
    >>> m = nlpkit.metrics.load_metric("seqeval_entities")
    >>> m.compute(predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "O"]])["f1"]
    1.0
    >>> m.compute(predictions=[["I-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "O"]], mode="strict")["f1"]
    0.0
"""

_CITATION = """
@misc{seqeval,
  title={{seqeval}: A Python framework for sequence labeling evaluation},
  url={https://github.com/chakki-works/seqeval},
  note={Software available from https://github.com/chakki-works/seqeval},
  author={Hiroki Nakayama},
  year={2018},
}
"""

_SCHEMES = {"IOB1": IOB1, "IOB2": IOB2, "IOBES": IOBES, "BIOES": IOBES, "BILOU": BILOU}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SeqevalEntities(evaluate.Metric):
    """Entity-level precision, recall and F1 (seqeval), default or strict mode, with a per-type table."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
            reference_urls=["https://github.com/chakki-works/seqeval"],
        )

    def _compute(self, predictions: list, references: list, mode: str | None = None,
                 scheme: str = "IOB2") -> dict:
        if mode not in (None, "default", "strict"):
            raise ValueError(f"seqeval_entities: mode={mode!r}; use None (default) or 'strict'")
        if scheme not in _SCHEMES:
            raise ValueError(f"seqeval_entities: scheme={scheme!r}; use one of {', '.join(_SCHEMES)}")
        for i, (p, r) in enumerate(zip(predictions, references)):
            if len(p) != len(r):
                raise ValueError(f"seqeval_entities: sentence {i} has {len(p)} predicted tags but {len(r)} "
                                 f"reference tags")
        strict = mode == "strict"
        options = {"mode": "strict", "scheme": _SCHEMES[scheme]} if strict else {}
        report = classification_report(references, predictions, output_dict=True, zero_division=0, **options)
        micro = report.pop("micro avg")
        macro = report.pop("macro avg")
        report.pop("weighted avg", None)
        per_type = {kind: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                           "f1": float(v["f1-score"]), "support": int(v["support"])}
                    for kind, v in sorted(report.items())}
        return {"precision": float(micro["precision"]), "recall": float(micro["recall"]),
                "f1": float(micro["f1-score"]), "macro_f1": float(macro["f1-score"]),
                "accuracy": float(accuracy_score(references, predictions)), "per_type": per_type}
