"""Train and evaluate the sentiment task.

    accelerate launch tasks/sentiment.py                                # defaults (see --help)
    accelerate launch tasks/sentiment.py <preset>                       # a preset by name (nlpkit presets sentiment)
    accelerate launch tasks/sentiment.py train.epochs=1 output_dir=outputs/my-run
    accelerate launch --config_file accelerate_configs/multi_gpu_bf16.yaml tasks/sentiment.py

Run with --help for every option.
"""

from nlpkit.cli import main

if __name__ == "__main__":
    main("sentiment")
