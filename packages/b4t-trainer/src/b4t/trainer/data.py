"""``ListDataset``, ``IterDataset``, ``seed_everything``, ``cal_ts_num`` and ``search_layer``:
bert4torch's data and debug helpers."""

from __future__ import annotations

import gc
import os
import random
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset


class ListDataset(Dataset):
    """A map-style dataset over a list of samples, bert4torch's way.

    ``ListDataset(file_path)`` calls ``self.load_data(file_path)`` once, with what it
    was given (one path, or the whole list of paths), and keeps what it returns;
    ``ListDataset(data=[...])`` keeps the list (``data_list=`` is b4t 0.1's name).
    The default ``load_data`` returns its argument, as 0.2.5's does. Override it
    (a static or instance method) to read files::

        class MyDataset(ListDataset):
            @staticmethod
            def load_data(filenames):
                if isinstance(filenames, str):
                    filenames = [filenames]
                return [line.split("\\t") for f in filenames for line in open(f, encoding="utf-8")]

    Extra keyword arguments are kept in ``self.kwargs`` for ``load_data`` to use.
    """

    def __init__(
        self,
        file_path: str | os.PathLike[str] | Sequence[Any] | None = None,
        data: Sequence[Any] | None = None,
        *,
        data_list: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if data is not None and data_list is not None:
            raise ValueError("ListDataset takes data or data_list (the same thing), not both")
        if data is None:
            data = data_list
        if file_path is not None and data is not None:
            raise ValueError("ListDataset takes file_path or data, not both")
        self.kwargs = kwargs
        if isinstance(file_path, (str, os.PathLike, list, tuple)):
            self.data = self.load_data(file_path)
        elif file_path is not None:
            raise TypeError(
                f"file_path must be a path or a list/tuple of paths, got {type(file_path).__name__}"
            )
        elif data is not None:
            if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
                raise TypeError(f"data must be a list of samples, got {type(data).__name__}")
            self.data = data if isinstance(data, list) else list(data)
        else:
            raise ValueError("ListDataset needs file_path or data (a list of samples)")

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Any:
        return self.data[index]

    @staticmethod
    def load_data(file_path: Any) -> Any:
        """Turn ``file_path`` (as given to the constructor) into the samples; override it.

        The default returns ``file_path`` itself, as bert4torch 0.2.5 does.
        """
        return file_path


class IterDataset(IterableDataset):
    """A streaming dataset over text files, bert4torch 0.2.5's way: iterating it yields
    ``self.load_data(file_path)``, by default every line of the file (or of each file of
    a list, in order, newline kept). Override ``load_data`` to parse lines; pass
    ``steps_per_epoch`` to ``fit`` (a stream has no ``len``)."""

    def __init__(
        self, file_path: str | os.PathLike[str] | Sequence[Any] | None = None, **kwargs: Any
    ) -> None:
        if not isinstance(file_path, (str, os.PathLike, list, tuple)):
            raise TypeError(
                "IterDataset needs file_path: a path or a list/tuple of paths, got "
                f"{type(file_path).__name__}"
            )
        self.kwargs = kwargs
        self.file_path = file_path

    def __iter__(self) -> Iterator[Any]:
        return iter(self.load_data(self.file_path))

    @staticmethod
    def load_data(file_path: Any, verbose: int = 0) -> Iterator[Any]:
        """Yield the lines of ``file_path`` (one path or several, in order)."""
        paths = [file_path] if isinstance(file_path, (str, os.PathLike)) else list(file_path)
        for path in paths:
            if verbose:
                print("Load data: ", path)
            with open(path, encoding="utf-8") as handle:
                yield from handle


def search_layer(
    model: nn.Module,
    layer_name: str,
    retrun_first: bool = True,
    *,
    return_first: bool | None = None,
) -> Any:
    """Trainable parameters whose name contains ``layer_name`` (bert4torch 0.2.5's helper).

    The first one (``retrun_first=True``, 0.2.5's spelling; ``return_first=`` also
    works) or the list of all; ``None`` when none matches.
    """
    first = retrun_first if return_first is None else return_first
    found = [p for name, p in model.named_parameters() if p.requires_grad and layer_name in name]
    if not found:
        return None
    return found[0] if first else found


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


def cal_ts_num(tensor_shape: Sequence[int] | torch.Size, device: str | None = "cuda") -> int:
    """Count the live tensors of shape ``tensor_shape`` (a leak hunt); prints and returns it.

    As bert4torch 0.2.5's helper, it walks the garbage collector's objects, prints
    each matching tensor's shape and then the count; 0.2.5 counts CUDA tensors only
    (``device='cuda'``, the default here too), ``device='cpu'`` counts CPU ones and
    ``device=None`` every device. b4t also returns the count.
    """
    shape = torch.Size(tensor_shape)
    count = 0
    with warnings.catch_warnings():  # some module objects warn when merely type-checked
        warnings.simplefilter("ignore")
        objects = gc.get_objects()
        tensors = [obj for obj in objects if torch.is_tensor(obj)]
    del objects
    for obj in tensors:
        try:
            if device is not None and obj.device.type != torch.device(device).type:
                continue
            if obj.size() == shape:
                print(obj.shape)
                count += 1
        except Exception as exc:  # objects that fail while being inspected are skipped
            print(f"skipped an object that failed inspection: {exc!r}")
    print(count)
    return count
