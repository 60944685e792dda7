"""Two gloo processes on CPU (torchrun) train like one process on the global batch.

The ranks also accumulate gradients over 2 micro-batches (DDP ``no_sync`` on
the first), so one optimizer step sees 8 samples, as the single process does.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from b4t.trainer import Trainer

WORKER = Path(__file__).with_name("ddp_worker.py")


def _worker_module():
    spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_two_processes_match_single_process_training(tmp_path) -> None:
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        "--tee=3",  # copy each rank's output, lines prefixed "[default<rank>]:"
        str(WORKER),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Only rank 0 writes logs, checkpoints and weights; only it shows a progress bar.
    assert (tmp_path / "log_rank0.txt").exists() and not (tmp_path / "log_rank1.txt").exists()
    assert (tmp_path / "ckpt_rank0" / "last.pt").exists()
    assert not (tmp_path / "ckpt_rank1").exists()
    output = (proc.stdout + proc.stderr).replace("\r", "\n")
    rank0 = [line for line in output.splitlines() if line.startswith("[default0]")]
    rank1 = [line for line in output.splitlines() if line.startswith("[default1]")]
    assert any("Epoch 2/2" in line for line in rank0), output[-3000:]
    assert any("rank 1 done" in line for line in rank1), output[-3000:]
    assert not any("Epoch" in line for line in rank1), output[-3000:]

    worker = _worker_module()
    module = worker.build_model()
    trainer = Trainer(module)
    trainer.compile(**worker.compile_kwargs(module))
    loader = DataLoader(worker.build_data(), batch_size=worker.GLOBAL_BATCH)
    history = trainer.fit(loader, epochs=2, verbose=0)

    saved = torch.load(tmp_path / "weights.pt", weights_only=True)
    other = torch.load(tmp_path / "raw_rank1.pt", weights_only=True)
    for key, value in module.state_dict().items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=1e-6)
        assert torch.equal(saved[key], other[key])  # the ranks agree
    # model.head.decode(...) on the BaseModelDDP reached the wrapped module on both ranks
    decoded = module(worker.build_data().tensors[0]).argmax(-1)
    for rank in (0, 1):
        assert torch.equal(torch.load(tmp_path / f"decoded_rank{rank}.pt"), decoded)
    # Epoch logs are averaged over the ranks: both ranks log the single-process values.
    for rank in (0, 1):
        logged = torch.load(tmp_path / f"history_rank{rank}.pt", weights_only=True)
        assert set(logged) == {"loss", "accuracy"}
        for key, values in history.history.items():
            if key == "loss":  # logged as back-propagated: divided by the accumulation steps
                values = [v / worker.ACCUMULATION for v in values]
            assert logged[key] == pytest.approx(values, abs=1e-6), (rank, key)
