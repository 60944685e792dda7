"""A process SIGKILLed mid-epoch resumes to the same weights as an uninterrupted run."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

import torch

from b4t.trainer import ResumeCheckpoint, TerminateOnNaN

WORKER = Path(__file__).with_name("kill_worker.py")


def _worker():
    spec = importlib.util.spec_from_file_location("kill_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path) -> None:
    worker = _worker()
    kill_at = 7  # inside the second epoch (5 steps each)
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path / "run"), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["global_step"] == kill_at

    def fit(directory, seed, resume):
        trainer, loader = worker.build(seed)
        callbacks = [TerminateOnNaN(), ResumeCheckpoint(directory)]
        trainer.fit(
            loader,
            epochs=worker.EPOCHS,
            steps_per_epoch=worker.STEPS,
            callbacks=callbacks,
            verbose=0,
            resume_from=directory / "last.pt" if resume else None,
        )
        return trainer

    reference = fit(tmp_path / "ref", seed=0, resume=False)
    resumed = fit(tmp_path / "run", seed=99, resume=True)
    assert resumed.global_step == reference.global_step == worker.EPOCHS * worker.STEPS
    for (name, a), b in zip(
        resumed.module.state_dict().items(), reference.module.state_dict().values()
    ):
        assert torch.equal(a, b), name
    assert resumed.history.history == reference.history.history
