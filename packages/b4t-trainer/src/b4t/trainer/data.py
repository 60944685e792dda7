"""``ListDataset`` and ``seed_everything``, bert4torch's data helpers."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class ListDataset(Dataset):
    """A map-style dataset over a list of samples.

    Pass ``data_list`` directly, or ``file_path`` and override ``load_data``
    (a static or instance method returning a list) the bert4torch way::

        class MyDataset(ListDataset):
            @staticmethod
            def load_data(filename):
                return [line.split("\\t") for line in open(filename, encoding="utf-8")]
    """

    def __init__(
        self, file_path: str | Sequence[str] | None = None, data_list: Sequence[Any] | None = None
    ) -> None:
        if file_path is not None and data_list is not None:
            raise ValueError("ListDataset takes file_path or data_list, not both")
        if data_list is not None:
            self.data = list(data_list)
        elif file_path is not None:
            if isinstance(file_path, (str, os.PathLike)):
                self.data = list(self.load_data(file_path))
            else:
                self.data = [item for path in file_path for item in self.load_data(path)]
        else:
            raise ValueError("ListDataset needs file_path or data_list")

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Any:
        return self.data[index]

    @staticmethod
    def load_data(file_path: Any) -> list[Any]:
        """Read one file into a list of samples; override in a subclass."""
        raise NotImplementedError(
            f"{ListDataset.__name__}.load_data is not implemented; override it to read "
            f"{file_path!r}, or pass data_list"
        )


def seed_everything(seed: int | None = None) -> int:
    """Seed python, numpy and torch (CPU and CUDA); returns the seed used.

    ``seed=None`` draws one at random. ``PYTHONHASHSEED`` is set for child
    processes (it cannot change the hashing of the running interpreter).
    """
    if seed is None:
        seed = random.randint(0, 2**32 - 1)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed
