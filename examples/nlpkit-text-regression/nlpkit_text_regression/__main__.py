"""Launch script of the text_regression task, installed with the package::

    accelerate launch -m nlpkit_text_regression quick data.source=reviews.csv
    python -m nlpkit_text_regression --help

Same arguments as ``nlpkit train text_regression``: ``[PRESET] [key=value ...]``.
"""

from nlpkit.cli import main

if __name__ == "__main__":
    main("text_regression")
