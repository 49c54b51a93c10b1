"""nlpkit perplexity from per-example summed token NLLs, a local `evaluate` module (token-weighted)."""

import math

import datasets
import evaluate

_DESCRIPTION = """
Corpus perplexity from per-example sums of token negative log-likelihoods (natural log) and token counts:
perplexity = exp(sum of nll_sum / sum of n_tokens). Weighting by tokens (not averaging per-example or
per-batch losses) makes the result independent of batch size, padding and the number of processes, so it is
correct on values gathered from every rank with `accelerator.gather_for_metrics`.
"""

_KWARGS_DESCRIPTION = """
Args:
    nll_sum (`list` of `float`): per example, the summed negative log-likelihood (nats) of its scored tokens,
        e.g. `cross_entropy(logits, labels, reduction="none")` summed over the non-ignored positions.
    n_tokens (`int` list): per example, the number of scored tokens (labels != -100).
Returns:
    perplexity (`float`): exp(loss).
    loss (`float`): mean token NLL in nats, sum(nll_sum) / sum(n_tokens).
    tokens (`int`): total number of scored tokens.
Examples:
    >>> ppl = nlpkit.metrics.load_metric("perplexity")
    >>> ppl.compute(nll_sum=[2.0, 4.0], n_tokens=[1, 2])
    {'perplexity': 7.38905609893065, 'loss': 2.0, 'tokens': 3}
"""

_CITATION = """
@article{jelinek1977perplexity,
  title={Perplexity--a measure of the difficulty of speech recognition tasks},
  author={Jelinek, Fred and Mercer, Robert L and Bahl, Lalit R and Baker, James K},
  journal={The Journal of the Acoustical Society of America},
  volume={62},
  number={S1},
  pages={S63--S63},
  year={1977}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Perplexity(evaluate.Metric):
    """Token-weighted corpus perplexity."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"nll_sum": datasets.Value("float64"), "n_tokens": datasets.Value("int64")}
            ),
            reference_urls=["https://huggingface.co/docs/transformers/perplexity"],
        )

    def _compute(self, nll_sum: list[float], n_tokens: list[int]) -> dict[str, float | int]:
        tokens = int(sum(n_tokens))
        if tokens <= 0:
            raise ValueError("perplexity: the examples hold no scored tokens (sum of n_tokens is 0)")
        if any(n < 0 for n in n_tokens):
            raise ValueError("perplexity: n_tokens must not be negative")
        loss = math.fsum(nll_sum) / tokens
        # exp overflows a float above ~709 nats/token: report inf rather than raise.
        perplexity = math.exp(loss) if loss < 709.0 else math.inf
        return {"perplexity": perplexity, "loss": loss, "tokens": tokens}
