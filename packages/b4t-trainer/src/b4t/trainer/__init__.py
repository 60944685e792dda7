"""b4t.trainer.

a keras-like compile/fit trainer with callbacks, resume and torch.distributed support.
"""

# cpu first: it sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP (see cpu.py)
from b4t.trainer import cpu as cpu
from b4t.trainer._version import __version__
from b4t.trainer.base_model import BM, BaseModel, BaseModelDDP, BaseModelDP
from b4t.trainer.callback import HOOK_NAMES, Callback
from b4t.trainer.callbacks import (
    EMA,
    Checkpoint,
    EarlyStopping,
    Evaluator,
    History,
    LambdaCallback,
    Logger,
    ProgressBar,
    ResumeCheckpoint,
    Tensorboard,
    TerminateOnNaN,
)
from b4t.trainer.data import IterDataset, ListDataset, cal_ts_num, search_layer, seed_everything
from b4t.trainer.ema import ExponentialMovingAverage, extend_with_exponential_moving_average
from b4t.trainer.keras_callbacks import (
    BaseLogger,
    CallbackList,
    Progbar,
    ProgbarLogger,
    ReduceLROnPlateau,
    RemoteMonitor,
)
from b4t.trainer.metrics import METRICS, metric_mapping, resolve_metrics
from b4t.trainer.schedules import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)
from b4t.trainer.state import atomic_save
from b4t.trainer.trainer import Trainer

__all__ = [
    "BM",
    "EMA",
    "HOOK_NAMES",
    "METRICS",
    "BaseLogger",
    "BaseModel",
    "BaseModelDDP",
    "BaseModelDP",
    "Callback",
    "CallbackList",
    "Checkpoint",
    "EarlyStopping",
    "Evaluator",
    "ExponentialMovingAverage",
    "History",
    "IterDataset",
    "LambdaCallback",
    "ListDataset",
    "Logger",
    "Progbar",
    "ProgbarLogger",
    "ProgressBar",
    "ReduceLROnPlateau",
    "RemoteMonitor",
    "ResumeCheckpoint",
    "Tensorboard",
    "TerminateOnNaN",
    "Trainer",
    "__version__",
    "atomic_save",
    "cal_ts_num",
    "extend_with_exponential_moving_average",
    "get_constant_schedule_with_warmup",
    "get_cosine_schedule_with_warmup",
    "get_linear_schedule_with_warmup",
    "metric_mapping",
    "resolve_metrics",
    "search_layer",
    "seed_everything",
]
