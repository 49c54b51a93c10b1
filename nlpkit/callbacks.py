"""Callbacks: behaviour that plugs into the training loop's named events instead of branching inside it.

The loop (:class:`nlpkit.training.Loop`) fires these events, in this order, on every callback it holds (its
own first, then the task's :meth:`~nlpkit.task.Task.callbacks`):

==========================  =====================================================================================
event                       when
==========================  =====================================================================================
``before_training``         data loaded and encoded, model built and on its device, before the optimizer exists:
                            a callback may replace ``loop.model`` (LoRA) or evaluate it (before/after metrics)
``on_log``                  training loss / learning rate every ``train.log_every`` updates, and validation metrics
``after_evaluation``        after each validation during training: keep the best model, stop early
``on_train_end``            the update loop ended (completed, early-stopped or interrupted), before the final
                            evaluation: the best weights are loaded back here
``on_best_model_loaded``    the best weights (from an earlier evaluation) replaced the last ones
``on_save``                 the final model was written to ``directory`` (complete, under its final name)
``after_training``          everything is done: final validation/test metrics in ``loop.results``, model saved
==========================  =====================================================================================

A callback reads and changes the loop's public state: ``loop.task``, ``loop.model``, ``loop.accelerator``,
``loop.state`` (saved in checkpoints, so it survives a resume), ``loop.results`` (a
:class:`~nlpkit.task.RunResults`), ``loop.run_dir``, and asks the loop to stop with
:meth:`~nlpkit.training.Loop.request_stop`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlpkit.errors import ConfigError
from nlpkit.trackers import flat_hparams, start_trackers

if TYPE_CHECKING:
    from nlpkit.training import Loop

logger = logging.getLogger("nlpkit.callbacks")

__all__ = ["BestModelKeeper", "Callback", "EarlyStopping", "LoraAdapters", "TrackerLogger", "flat_hparams"]

BEST_DIR = "best_model"


class Callback:
    """Base class: override the events you need; every event does nothing by default."""

    def before_training(self, loop: Loop) -> None:
        """Model built and on its device, data encoded; the optimizer does not exist yet."""

    def on_log(self, loop: Loop, values: dict[str, float], step: int) -> None:
        """Scalars to log at update ``step`` (``train/loss``, ``train/lr``, ``eval/<metric>``)."""

    def after_evaluation(self, loop: Loop, metrics: dict[str, Any]) -> None:
        """A validation during training finished with ``metrics``."""

    def on_train_end(self, loop: Loop) -> None:
        """The update loop ended; ``loop.finished`` says whether the run reached its end (final evaluation and
        save follow only then)."""

    def on_best_model_loaded(self, loop: Loop, step: int, value: float) -> None:
        """The weights of update ``step`` (validation ``value``) were loaded back into ``loop.model``."""

    def on_save(self, loop: Loop, directory: Path) -> None:
        """The final model was saved into ``directory``."""

    def after_training(self, loop: Loop) -> None:
        """The run is over: ``loop.results`` has the final validation/test metrics (when ``loop.finished``)."""


# --------------------------------------------------------------------------------------------- trackers


class TrackerLogger(Callback):
    """Starts accelerate's trackers (``trackers=[tensorboard, mlflow, ...]``) named by ``tracker.*``, with the
    config as params (:func:`nlpkit.trackers.start_trackers`), and logs every value."""

    def before_training(self, loop: Loop) -> None:
        start_trackers(loop.accelerator, loop.task.cfg, loop.run_dir)

    def on_log(self, loop: Loop, values: dict[str, float], step: int) -> None:
        loop.accelerator.log(values, step=step)


# --------------------------------------------------------------------------------------------- best model


def _better(value: float, best: float | None, greater: bool) -> bool:
    return best is None or (value > best if greater else value < best)


class BestModelKeeper(Callback):
    """Keeps the weights of the best validation ``train.metric_for_best`` and loads them back at the end.

    The best weights are saved into ``run_dir/best_model`` after each improving evaluation (so they survive an
    interruption), restored after training (``load_best_model_at_end``) and removed once the final model is saved.
    """

    def after_evaluation(self, loop: Loop, metrics: dict[str, Any]) -> None:
        name, state = loop.task.main_metric, loop.state
        if name not in metrics:
            choices = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))
            raise ConfigError(f"train.metric_for_best={name!r} is not a validation metric; choose one of {choices}.")
        value = metrics[name]
        if _better(value, state["best_metric"], loop.task.greater_is_better):
            state.update(best_metric=value, best_step=state["global_step"], evals_without_improvement=0)
            acc = loop.accelerator
            weights = acc.get_state_dict(loop.model)
            if loop.writes_checkpoints:  # every machine loads it back at the end: one copy per run folder
                acc.unwrap_model(loop.model).save_pretrained(loop.run_dir / BEST_DIR, state_dict=weights,
                                                             safe_serialization=True)
        else:
            state["evals_without_improvement"] += 1

    def on_train_end(self, loop: Loop) -> None:
        state, best_dir = loop.state, loop.run_dir / BEST_DIR
        if not loop.finished or not best_dir.exists() or state["best_step"] in (None, state["global_step"]):
            return
        from safetensors.torch import load_file

        weights: dict[str, Any] = {}
        for shard in sorted(best_dir.glob("*.safetensors")):
            weights.update(load_file(str(shard)))
        unwrapped = loop.accelerator.unwrap_model(loop.model)
        if hasattr(unwrapped, "peft_config"):  # a PEFT model saved only its adapter, under PEFT's key names
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(unwrapped, weights)
        else:
            unwrapped.load_state_dict(weights, strict=False)
        loop.accelerator.print(f"Loaded the best model (update {state['best_step']}, "
                               f"{loop.task.main_metric}={state['best_metric']:.4f})")
        loop.fire("on_best_model_loaded", state["best_step"], state["best_metric"])

    def on_save(self, loop: Loop, directory: Path) -> None:
        if loop.writes_checkpoints:
            shutil.rmtree(loop.run_dir / BEST_DIR, ignore_errors=True)


class EarlyStopping(Callback):
    """Stops after ``train.early_stopping_patience`` evaluations without improvement (0: never)."""

    def __init__(self, patience: int):
        self.patience = patience

    def after_evaluation(self, loop: Loop, metrics: dict[str, Any]) -> None:
        if self.patience > 0 and loop.state["evals_without_improvement"] >= self.patience:
            loop.request_stop(f"early stopping: no {loop.task.main_metric} improvement in {self.patience} "
                              f"evaluations", finished=True)


# --------------------------------------------------------------------------------------------- LoRA


class LoraAdapters(Callback):
    """Wraps the model with fresh LoRA adapters (peft) before the optimizer is built; only they train.

    ``options`` is the ``lora.*`` config section (rank, alpha, dropout, target modules, merge); ``task_type``
    peft's ``TaskType`` name (``SEQ_CLS``, ``SEQ_2_SEQ_LM``, ``CAUSAL_LM``; None: the language-model type of
    the model built, ``SEQ_2_SEQ_LM`` for an encoder-decoder, else ``CAUSAL_LM``); ``modules_to_save`` the modules
    trained in full beside the adapters (a classifier's new head), or a function giving them once the model is
    built (callbacks are made before it). See :mod:`nlpkit.lora`.
    """

    def __init__(self, options: Any, task_type: str | None = "CAUSAL_LM",
                 modules_to_save: list[str] | Callable[[], list[str] | None] | None = None):
        self.options, self.task_type, self.modules_to_save = options, task_type, modules_to_save

    def before_training(self, loop: Loop) -> None:
        from accelerate.utils import set_seed

        from nlpkit.lora import apply_lora, is_peft_model, trainable_parameters

        checkpointing = loop.task.cfg.train.gradient_checkpointing
        if is_peft_model(loop.model):  # continuing a saved adapter: train it, not a second one on top
            for name, param in loop.model.named_parameters():
                param.requires_grad = "lora_" in name or "modules_to_save" in name
        else:
            save = self.modules_to_save() if callable(self.modules_to_save) else self.modules_to_save
            task_type = self.task_type or ("SEQ_2_SEQ_LM" if getattr(loop.model.config, "is_encoder_decoder", False)
                                           else "CAUSAL_LM")
            loop.model = apply_lora(loop.model, self.options, task_type, modules_to_save=save,
                                    gradient_checkpointing=checkpointing)
        # Re-seed: the adapters' initialisation drew random numbers, and training (dropout masks, batch order)
        # must not depend on whether LoRA was applied.
        set_seed(loop.cfg.seed)
        if checkpointing:
            # frozen embeddings: checkpointed blocks need an input that requires grad to backprop to LoRA
            loop.model.enable_input_require_grads()
        trainable, total = trainable_parameters(loop.model)
        loop.results.notes["trainable parameters"] = f"{trainable:,} of {total:,} (LoRA)"
        logger.info("LoRA: %s of %s parameters trainable", f"{trainable:,}", f"{total:,}")
