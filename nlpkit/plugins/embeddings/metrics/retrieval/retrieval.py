"""nlpkit retrieval metrics from the rank of each query's relevant passage, a local `evaluate` module."""

import math

import datasets
import evaluate

_DESCRIPTION = """
Ranking quality when every query has one relevant passage in a corpus (a question and its answer, a sentence
and its paraphrase): the input is the rank of that passage among all passages ordered by the model's score
(1 = first). MRR@10 is the mean of 1/rank over the queries (0 when the rank is over 10), NDCG@10 the mean of
1/log2(rank + 1) (0 over 10; with one relevant passage the ideal DCG is 1), recall@k the share of queries whose
passage is in the top k. The same definitions as sentence-transformers' InformationRetrievalEvaluator and
pytrec_eval for a single relevant passage per query.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): the rank (1-based) of each query's relevant passage.
Returns:
    mrr_at_10, ndcg_at_10 (`float`), recall_at_1, recall_at_5, recall_at_10, recall_at_100 (`float`),
    mean_rank, median_rank (`float`), queries (`int`).
Examples:
    >>> r = nlpkit.metrics.load_metric("retrieval")
    >>> r.compute(predictions=[1, 2, 20])["mrr_at_10"]
    0.5
"""

_CITATION = """
@inproceedings{reimers2019sentence,
  title={Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks},
  author={Reimers, Nils and Gurevych, Iryna},
  booktitle={Proceedings of EMNLP-IJCNLP 2019},
  pages={3982--3992},
  year={2019}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Retrieval(evaluate.Metric):
    """MRR@10, NDCG@10 and recall@k from the rank of each query's one relevant passage."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64")}),
            reference_urls=["https://sbert.net/docs/package_reference/sentence_transformer/evaluation.html"],
        )

    def _compute(self, predictions: list[int]) -> dict[str, float]:
        ranks = [int(r) for r in predictions]
        if any(r < 1 for r in ranks):
            raise ValueError("retrieval: ranks start at 1")
        n = len(ranks)
        if n == 0:
            nan = float("nan")
            return {"mrr_at_10": nan, "ndcg_at_10": nan, "recall_at_1": nan, "recall_at_5": nan,
                    "recall_at_10": nan, "recall_at_100": nan, "mean_rank": nan, "median_rank": nan, "queries": 0}
        ordered = sorted(ranks)
        mid = n // 2
        return {
            "mrr_at_10": sum(1.0 / r for r in ranks if r <= 10) / n,
            "ndcg_at_10": sum(1.0 / math.log2(r + 1) for r in ranks if r <= 10) / n,
            "recall_at_1": sum(r <= 1 for r in ranks) / n,
            "recall_at_5": sum(r <= 5 for r in ranks) / n,
            "recall_at_10": sum(r <= 10 for r in ranks) / n,
            "recall_at_100": sum(r <= 100 for r in ranks) / n,
            "mean_rank": sum(ranks) / n,
            "median_rank": float(ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2),
            "queries": n,
        }
