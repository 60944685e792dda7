"""The running epoch's logs: what ``fit`` adds up batch by batch and the epoch means it
hands to ``on_epoch_end`` (as torch4keras's BaseLogger computes them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from b4t.trainer.callback import Logs


@dataclass(slots=True)
class EpochTotals:
    """Batch logs of the running epoch.

    Attributes:
        sums: per key, the sum of ``value * logs['size']`` over the batches.
        last: the last value of each stateful metric.
        count: the samples seen (the sum of ``logs['size']``).
    """

    sums: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    count: int = 0

    def add(self, logs: Mapping[str, Any], stateful: frozenset[str]) -> None:
        """Fold in one batch's logs (numbers only; ``size`` weighs them)."""
        size = logs["size"]
        sums, last = self.sums, self.last
        for key, value in logs.items():
            if isinstance(value, (int, float)) and key != "size":
                if stateful and key in stateful:
                    last[key] = value
                else:
                    sums[key] = sums.get(key, 0.0) + value * size
        self.count += size

    def running_means(self) -> dict[str, float]:
        """The size-weighted means so far (this rank only), e.g. for a progress bar."""
        count = max(1, self.count)
        return {k: v / count for k, v in self.sums.items()}

    def epoch_logs(self, forward_module: nn.Module, device: torch.device) -> Logs:
        """The epoch means weighted by batch size; stateful metrics keep their last value.

        Under DDP (``forward_module`` a ``DistributedDataParallel`` in a group of more
        than one rank) the sums and counts are reduced over all ranks first, so every
        rank's EarlyStopping / Checkpoint sees the same values.
        """
        sums, count = self.sums, self.count
        dist = torch.distributed
        if (
            isinstance(forward_module, nn.parallel.DistributedDataParallel)
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            keys = sorted(sums)
            packed = torch.tensor(
                [sums[k] for k in keys] + [float(count)], dtype=torch.float64, device=device
            )
            dist.all_reduce(packed)
            sums = dict(zip(keys, packed[:-1].tolist()))
            count = int(packed[-1].item())
        logs = {k: v / max(1, count) for k, v in sums.items()}
        logs.update(self.last)
        return logs
