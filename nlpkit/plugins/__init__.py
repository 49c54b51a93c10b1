"""The built-in task plugins, one package each, found through the ``nlpkit.tasks`` entry points."""
