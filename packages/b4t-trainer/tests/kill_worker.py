"""Run by test_kill.py: train with a checkpoint every step, then SIGKILL itself mid-epoch.

Usage: python kill_worker.py CKPT_DIR KILL_AT_STEP
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from b4t.trainer import (
    Callback,
    ResumeCheckpoint,
    TerminateOnNaN,
    get_cosine_schedule_with_warmup,
)

EPOCHS, STEPS = 3, 5


def build(seed: int):
    """The model, compiled, and its shuffling loader (dropout + Adam + cosine schedule)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 3))
    from b4t.trainer import Trainer

    trainer = Trainer(net)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    trainer.compile(
        nn.CrossEntropyLoss(),
        opt,
        scheduler=get_cosine_schedule_with_warmup(opt, 3, EPOCHS * STEPS),
        metrics=["accuracy"],
    )
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(16, 6, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    return trainer, loader


class SigKill(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, global_step, local_step, logs=None):
        if global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main(directory: Path, kill_at: int) -> None:
    torch.set_num_threads(1)
    trainer, loader = build(seed=0)
    callbacks = [TerminateOnNaN(), ResumeCheckpoint(directory, every_n_steps=1), SigKill(kill_at)]
    trainer.fit(loader, epochs=EPOCHS, steps_per_epoch=STEPS, callbacks=callbacks, verbose=0)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
