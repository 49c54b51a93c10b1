"""Train and evaluate the translation task.

    accelerate launch tasks/translation.py                              # defaults (see --help)
    accelerate launch tasks/translation.py <preset>                     # a preset by name (nlpkit presets translation)
    accelerate launch tasks/translation.py train.epochs=1 output_dir=outputs/my-run
    accelerate launch --config_file accelerate_configs/multi_gpu_bf16.yaml tasks/translation.py

Run with --help for every option.
"""

from nlpkit.cli import main

if __name__ == "__main__":
    main("translation")
