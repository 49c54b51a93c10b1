"""Train and evaluate the generation task.

    accelerate launch tasks/generation.py                               # defaults (see --help)
    accelerate launch tasks/generation.py <preset>                      # a preset by name (nlpkit presets generation)
    accelerate launch tasks/generation.py train.epochs=1 output_dir=outputs/my-run
    accelerate launch --config_file accelerate_configs/multi_gpu_bf16.yaml tasks/generation.py

Run with --help for every option.
"""

from nlpkit.cli import main

if __name__ == "__main__":
    main("generation")
