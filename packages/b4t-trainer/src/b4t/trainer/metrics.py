"""Metrics: names ('accuracy', 'mae', ...), callables and ``{'name': fn}``.

A metric is ``fn(y_pred, y_true) -> float`` computed on one batch (without
gradients); the trainer averages it over an epoch weighted by batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from b4t.trainer.batches import log_value

MetricFn = Callable[[Any, Any], Any]


def _tensor(y_pred: Any, name: str) -> torch.Tensor:
    if isinstance(y_pred, (list, tuple)) and y_pred:  # the first output, as torch4keras
        y_pred = y_pred[0]
    if not isinstance(y_pred, torch.Tensor):
        raise TypeError(
            f"metric {name!r} needs the model output to be a tensor, got {type(y_pred).__name__}; "
            "pass a callable metric that picks the right output"
        )
    return y_pred


def accuracy(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Fraction of correct classes: argmax over the last dim when ``y_pred`` has one more dim."""
    y_pred = _tensor(y_pred, "accuracy")
    y_true = _tensor(y_true, "accuracy")
    if y_pred.dim() == y_true.dim() + 1:
        y_pred = y_pred.argmax(dim=-1)
    elif y_pred.shape != y_true.shape:
        raise ValueError(
            f"accuracy: y_pred shape {tuple(y_pred.shape)} does not fit y_true shape "
            f"{tuple(y_true.shape)}"
        )
    # a count over the number of items in Python floats, as torch4keras computes it
    return int((y_pred == y_true).sum()) / max(1, y_true.numel())


def binary_accuracy(y_pred: torch.Tensor, y_true: torch.Tensor, threshold: float = 0.5) -> float:
    """Fraction with ``(y_pred > threshold) == y_true`` (``y_pred`` are probabilities)."""
    y_pred = _tensor(y_pred, "binary_accuracy")
    return int(((y_pred > threshold).to(y_true.dtype) == y_true).sum()) / max(1, y_true.numel())


def _same_shape(y_pred: Any, y_true: torch.Tensor, name: str) -> torch.Tensor:
    y_pred = _tensor(y_pred, name)
    if y_pred.shape != y_true.shape:
        raise ValueError(
            f"{name}: y_pred shape {tuple(y_pred.shape)} differs from y_true shape "
            f"{tuple(y_true.shape)}"
        )
    return y_pred


def mean_absolute_error(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Mean of ``|y_pred - y_true|`` (same shapes)."""
    return (_same_shape(y_pred, y_true, "mae") - y_true).abs().float().mean().item()


def mean_squared_error(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Mean of ``(y_pred - y_true) ** 2`` (same shapes)."""
    return (_same_shape(y_pred, y_true, "mse") - y_true).float().pow(2).mean().item()


def mean_absolute_percentage_error(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """``100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7))`` (same shapes)."""
    y_pred = _same_shape(y_pred, y_true, "mape")
    diff = (y_true - y_pred).abs() / y_true.abs().clamp(min=1e-7)
    return 100.0 * diff.float().mean().item()


def mean_squared_logarithmic_error(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Mean of ``(log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1)) ** 2``."""
    y_pred = _same_shape(y_pred, y_true, "msle")
    first = torch.log(y_pred.clamp(min=1e-7) + 1.0)
    second = torch.log(y_true.clamp(min=1e-7) + 1.0)
    return (first - second).float().pow(2).mean().item()


METRICS: dict[str, MetricFn] = {
    "accuracy": accuracy,
    "acc": accuracy,
    "binary_accuracy": binary_accuracy,
    "mae": mean_absolute_error,
    "mean_absolute_error": mean_absolute_error,
    "mse": mean_squared_error,
    "mean_squared_error": mean_squared_error,
    "mape": mean_absolute_percentage_error,
    "MAPE": mean_absolute_percentage_error,
    "mean_absolute_percentage_error": mean_absolute_percentage_error,
    "msle": mean_squared_logarithmic_error,
    "MSLE": mean_squared_logarithmic_error,
    "mean_squared_logarithmic_error": mean_squared_logarithmic_error,
    "MAE": mean_absolute_error,
    "MSE": mean_squared_error,
}
"""Metric functions by the names ``compile(metrics=...)`` accepts."""


def metric_mapping(metric: Any, func: Any, y_pred: Any, y_true: Any) -> Any:
    """torch4keras 0.0.4's ``metric_mapping``: one metric's value on one batch.

    ``func`` callable: its result (a dict when ``metric`` is the function itself, a
    number when ``metric`` is its name); ``metric='loss'``: ``None``; a built-in name
    (``accuracy``/``acc``, ``mae``, ``mse``, ``mape``, ``msle``, ...): its value on the
    first output; any other name: ``None``.
    """
    if callable(func):
        result = func(y_pred, y_true)
        if callable(metric) and not isinstance(result, Mapping):
            raise TypeError(
                f"metric function {getattr(metric, '__name__', metric)!r} passed without a "
                f"name must return a dict of values, got {type(result).__name__}"
            )
        if isinstance(metric, str) and not isinstance(result, (int, float)):
            raise TypeError(f"metric {metric!r} must return an int or float, got {result!r}")
        return result
    if metric == "loss" or not isinstance(metric, str) or metric not in METRICS:
        return None
    return METRICS[metric](y_pred, y_true)


class LossKey:
    """A metric name that is no built-in metric: it names a key of the dict the loss returns.

    torch4keras 0.0.4 accepts such names (GPLinker's ``entity_loss``, UDA's ``loss_sup``);
    the value is logged from the loss's dict. A name the loss never returns is a
    ``ValueError`` at the first batch, naming the keys there are.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, y_pred: Any, y_true: Any) -> Any:
        raise ValueError(
            f"unknown metric name {self.name!r}: neither a built-in metric "
            f"({sorted(METRICS)}) nor a key of the dict the loss returns"
        )

    def __repr__(self) -> str:
        return f"LossKey({self.name!r})"


def resolve_metrics(metrics: Any) -> dict[str, MetricFn]:
    """Normalise ``compile(metrics=...)`` into ``{log_name: fn}``.

    Accepts ``None``, a name, a callable, ``{'name': fn}``, or a list of those. A name
    that is no built-in metric is a :class:`LossKey` (a key of the loss's dict);
    ``'loss'`` itself is always logged and is skipped, as in torch4keras 0.0.4.
    """
    if metrics is None:
        return {}
    if isinstance(metrics, (str, Mapping)) or callable(metrics):
        metrics = [metrics]
    if not isinstance(metrics, Sequence):
        raise TypeError(f"metrics must be a name, callable, dict or list, got {type(metrics)}")
    resolved: dict[str, MetricFn] = {}
    for item in metrics:
        if isinstance(item, str):
            if item != "loss":
                resolved[item] = METRICS[item] if item in METRICS else LossKey(item)
        elif isinstance(item, Mapping):
            for name, fn in item.items():
                if not callable(fn):
                    raise TypeError(f"metric {name!r} must be callable, got {type(fn).__name__}")
                resolved[str(name)] = fn
        elif callable(item):
            resolved[getattr(item, "__name__", type(item).__name__)] = item
        else:
            raise TypeError(f"metric must be a name, callable or dict, got {item!r}")
    if "loss" in resolved:
        raise ValueError("a metric may not be named 'loss' (the loss is logged under that name)")
    return resolved


def add_metrics(
    metrics: Mapping[str, MetricFn], logs: dict[str, Any], y_pred: Any, y_true: Any
) -> None:
    """Add each metric's value on one batch to ``logs`` under its name; a metric returning
    a dict adds its items. A :class:`LossKey` metric names a part the loss returned
    (already in ``logs``): one that is not there is a ``ValueError``."""
    for name, fn in metrics.items():
        if isinstance(fn, LossKey) and name not in logs:
            raise ValueError(
                f"unknown metric name {name!r}: neither a built-in metric "
                f"({sorted(METRICS)}) nor a key the loss returned (it returned "
                f"{sorted(k for k in logs if k != 'size')})"
            )
    for name, fn in metrics.items():
        if isinstance(fn, LossKey):
            continue
        value = fn(y_pred, y_true)
        if isinstance(value, Mapping):
            for key, item in value.items():
                logs[str(key)] = log_value(str(key), item)
        else:
            logs[name] = log_value(name, value)
