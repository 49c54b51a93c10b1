"""Train and evaluate the ner task (named-entity recognition).

    accelerate launch tasks/ner.py                                # defaults: WNUT-16 tweets, MiniLM-L6 (see --help)
    accelerate launch tasks/ner.py <preset>                       # a preset by name (nlpkit presets ner)
    accelerate launch tasks/ner.py data.source=train.conll data.scheme=IOB1
    accelerate launch --config_file accelerate_configs/single_gpu.yaml tasks/ner.py gpu

Run with --help for every option.
"""

from nlpkit.cli import main

if __name__ == "__main__":
    main("ner")
