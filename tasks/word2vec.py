"""Train and evaluate the word2vec task.

    accelerate launch tasks/word2vec.py                                 # defaults (see --help)
    accelerate launch tasks/word2vec.py <preset>                        # a preset by name (nlpkit presets word2vec)
    accelerate launch tasks/word2vec.py train.epochs=1 output_dir=outputs/my-run
    accelerate launch --config_file accelerate_configs/multi_gpu_bf16.yaml tasks/word2vec.py

Run with --help for every option.
"""

from nlpkit.cli import main

if __name__ == "__main__":
    main("word2vec")
