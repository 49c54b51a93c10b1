"""Train and evaluate the embeddings task (sentence embeddings for search and retrieval).

    accelerate launch tasks/embeddings.py                                # defaults (see --help)
    accelerate launch tasks/embeddings.py <preset>                       # a preset by name (nlpkit presets embeddings)
    accelerate launch tasks/embeddings.py data.source=pairs.jsonl loss=mnrl
    accelerate launch --config_file accelerate_configs/single_gpu.yaml tasks/embeddings.py gpu

Run with --help for every option.
"""

from nlpkit.cli import main

if __name__ == "__main__":
    main("embeddings")
