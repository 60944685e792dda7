"""The built-in callbacks, one module per idea, all importable from here.

- :mod:`b4t.trainer.progress`: ``ProgressBar`` and ``History``, added by ``fit`` itself
  (the bar unless ``verbose=0``);
- :mod:`b4t.trainer.loggers`: ``Logger`` (a text file) and ``Tensorboard``;
- :mod:`b4t.trainer.stopping`: ``EarlyStopping`` and ``TerminateOnNaN``;
- :mod:`b4t.trainer.checkpointing`: torch4keras's ``Checkpoint`` (path templates) and
  b4t's ``ResumeCheckpoint`` (a directory of full resume checkpoints);
- :mod:`b4t.trainer.evaluator`: ``Evaluator``, the base of validation callbacks;
- :mod:`b4t.trainer.ema`: ``EMA``; :mod:`b4t.trainer.callback`: ``LambdaCallback``;
- :mod:`b4t.trainer.monitor`: what the callbacks that watch one logged value share.

The others are passed in ``fit(callbacks=[...])``; they run in list order, so put an
``Evaluator`` before the ``EarlyStopping`` or ``Checkpoint`` that monitors its values.
"""

from b4t.trainer.callback import LambdaCallback
from b4t.trainer.checkpointing import Checkpoint, ResumeCheckpoint
from b4t.trainer.ema import EMA
from b4t.trainer.evaluator import Evaluator
from b4t.trainer.loggers import Logger, Tensorboard
from b4t.trainer.progress import History, ProgressBar
from b4t.trainer.stopping import EarlyStopping, TerminateOnNaN

__all__ = [
    "EMA",
    "Checkpoint",
    "EarlyStopping",
    "Evaluator",
    "History",
    "LambdaCallback",
    "Logger",
    "ProgressBar",
    "ResumeCheckpoint",
    "Tensorboard",
    "TerminateOnNaN",
]
