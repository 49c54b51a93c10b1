"""The embeddings demo (``nlpkit demo RUN``): a query ranks a small corpus (one passage per line) by cosine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import gradio

    from nlpkit.pipeline import Pipeline

#: The corpus the demo starts with (any passages can be typed in instead).
EXAMPLE_CORPUS = [
    "Click 'Forgot password' on the sign-in page and follow the link we email you.",
    "Refunds reach your card within five to ten working days.",
    "You can change your delivery address until the order ships.",
    "Our support team answers chats from 8am to 8pm, Monday to Friday.",
    "Two-factor authentication adds a code from your phone to every sign-in.",
    "Invoices are in the Billing section of your account settings.",
]
EXAMPLE_QUERIES = ["How do I reset my password?", "when do I get my money back", "where can I find my bill?"]


def rank(pipe: Pipeline, query: str, corpus_text: str, top_k: int) -> list[list[Any]]:
    """Rows ``[rank, cosine, passage]`` of the ``top_k`` passages (lines of ``corpus_text``) best for ``query``,
    through the pipeline's own search (the same vectors as ``pipe(texts)``, whatever runtime holds the model)."""
    passages = [line.strip() for line in (corpus_text or "").splitlines() if line.strip()]
    if not (query or "").strip() or not passages:
        return []
    hits = pipe(query, corpus=passages, top_k=int(top_k))
    return [[i + 1, round(h["score"], 4), h["text"]] for i, h in enumerate(hits)]


def build_demo(pipe: Pipeline) -> gradio.Blocks:
    """Query box + corpus box (one passage per line) + how many -> a table of passages, best first."""
    import gradio as gr

    def search(query: str, corpus_text: str, top_k: float) -> list[list[Any]]:
        return rank(pipe, query, corpus_text, int(top_k))

    with gr.Blocks() as demo:
        with gr.Row():
            with gr.Column():
                query = gr.Textbox(label="Query", lines=2, placeholder="Type a question or a sentence.",
                                   elem_id="embeddings-query")
                corpus = gr.Textbox(label="Corpus (one passage per line)", lines=8,
                                    value="\n".join(EXAMPLE_CORPUS), elem_id="embeddings-corpus")
                top_k = gr.Slider(1, 20, value=5, step=1, label="Passages shown")
                button = gr.Button("Search", variant="primary", elem_id="embeddings-submit")
                gr.Examples([[q] for q in EXAMPLE_QUERIES], inputs=query)
            with gr.Column():
                table = gr.Dataframe(headers=["rank", "cosine", "passage"], label="Best passages",
                                     elem_id="embeddings-results", wrap=True)
        button.click(search, [query, corpus, top_k], table)
        query.submit(search, [query, corpus, top_k], table)
    return demo
