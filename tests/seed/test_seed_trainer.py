"""b4t.trainer beside torch4keras 0.0.4 (bert4torch 0.2.5's trainer) on the same weights and data.

Each test builds the same tiny model twice (the seed's ``BaseModel`` and b4t's), copies
one set of initial weights into both, and trains on the same batches: per-step losses,
History and final weights must agree within 1e-5; deliberate differences are asserted
as such and listed in MIGRATION.md.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import urllib.parse
from typing import ClassVar

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import b4t.trainer as bt

N, BATCH = 13, 4  # batches of 4, 4, 4 and 1


def _data(n=N, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _layers():
    return nn.Linear(6, 16), nn.Linear(16, 3)


def _pair(b4t_seed):
    """The same MLP as a torch4keras BaseModel and as a b4t BaseModel, equal weights."""
    seed_base = b4t_seed["t4k_model"].BaseModel

    class SeedNet(seed_base):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = _layers()

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x)))

    class B4tNet(bt.BaseModel):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = _layers()

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x)))

    torch.manual_seed(0)
    seed_net, b4t_net = SeedNet(), B4tNet()
    b4t_net.load_state_dict(seed_net.state_dict())
    return seed_net, b4t_net


def _recorders(b4t_seed):
    seed_cb = b4t_seed["t4k_snippets"].Callback

    class SeedRec(seed_cb):
        def __init__(self):
            super().__init__()
            self.steps, self.epochs = [], []

        def on_batch_end(self, global_step, local_step, logs=None):
            self.steps.append((global_step, local_step, dict(logs)))

        def on_epoch_begin(self, global_step, epoch, logs=None):
            self.epochs.append(("begin", global_step, epoch))

        def on_epoch_end(self, global_step, epoch, logs=None):
            self.epochs.append(("end", global_step, epoch))

    class B4tRec(bt.Callback):
        def __init__(self):
            self.steps, self.epochs = [], []

        def on_batch_end(self, global_step, local_step, logs=None):
            self.steps.append((global_step, local_step, dict(logs)))

        def on_epoch_begin(self, global_step, epoch, logs=None):
            self.epochs.append(("begin", global_step, epoch))

        def on_epoch_end(self, global_step, epoch, logs=None):
            self.epochs.append(("end", global_step, epoch))

    return SeedRec(), B4tRec()


def _loss(y_pred, y_true):  # a tuple: the loss and two parts, logged as loss1 / loss2
    ce = nn.functional.cross_entropy(y_pred, y_true)
    aux = 0.01 * y_pred.pow(2).mean()
    return ce + aux, ce, aux


def hits(y_pred, y_true):  # a bare metric function returning a dict, as the seed's NER ones
    return {"hit": (y_pred.argmax(-1) == y_true).float().mean().item()}


def test_fit_history_losses_and_weights_match_the_seed(b4t_seed) -> None:
    seed_net, b4t_net = _pair(b4t_seed)
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)
    epochs, accumulation = 3, 2
    total = epochs * len(loader) // accumulation
    runs = {}
    for name, net, schedule in (
        ("seed", seed_net, b4t_seed["optimizers"].get_linear_schedule_with_warmup),
        ("b4t", b4t_net, bt.get_linear_schedule_with_warmup),
    ):
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        # positional, the seed's order: loss, optimizer, scheduler, clip_grad_norm, use_amp,
        # metrics, stateful_metrics, grad_accumulation_steps
        net.compile(_loss, opt, schedule(opt, 2, total), 0.3, False, ["accuracy", hits], None, 2)
        rec = _recorders(b4t_seed)[0 if name == "seed" else 1]
        # fit(loader, steps_per_epoch, epochs, callbacks, verbose); 0.0.4 fails with verbose=0
        history = net.fit(loader, None, epochs, [rec], 1 if name == "seed" else 0)
        runs[name] = (history, rec, opt)
    (s_hist, s_rec, s_opt), (b_hist, b_rec, b_opt) = runs["seed"], runs["b4t"]

    assert len(b_rec.steps) == len(s_rec.steps) == epochs * 4
    for (sg, sl, slogs), (bg, bl, blogs) in zip(s_rec.steps, b_rec.steps):
        assert (bg, bl) == (sg, sl)
        assert set(blogs) == set(slogs) == {"size", "loss", "loss1", "loss2", "accuracy", "hit"}
        assert blogs["size"] == slogs["size"]
        # 'loss' is the back-propagated loss (divided by grad_accumulation_steps) in both
        for key in ("loss", "loss1", "loss2", "accuracy", "hit"):
            assert blogs[key] == pytest.approx(slogs[key], abs=1e-5), (bg, key)
        assert blogs["accuracy"] == slogs["accuracy"]  # a count over a count, exactly
    for a, b in zip(b4t_net.state_dict().values(), seed_net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert b_opt.param_groups[0]["lr"] == pytest.approx(s_opt.param_groups[0]["lr"])

    # History: epochs counted from 1; epoch values weighted by batch size, as the seed's
    # BaseLogger does (batches 4, 4, 4, 1: a plain mean over batches would differ)
    assert b_hist.epoch == s_hist.epoch == [1, 2, 3]
    for key in ("loss", "loss1", "loss2", "accuracy", "hit"):
        assert b_hist.history[key] == pytest.approx(s_hist.history[key], abs=1e-5), key
    plain = [sum(st[2]["accuracy"] for st in s_rec.steps[i * 4 : i * 4 + 4]) / 4 for i in range(3)]
    assert any(abs(p - h) > 1e-3 for p, h in zip(plain, s_hist.history["accuracy"]))
    # deviation (MIGRATION.md): 0.2.5's epoch logs also carry the last batch's 'size'
    assert s_hist.history["size"] == [1, 1, 1] and "size" not in b_hist.history

    # hook arguments: on_epoch_end gets the epoch's last batch index in both
    ends = [e for e in b_rec.epochs if e[0] == "end"]
    assert (
        ends
        == [e for e in s_rec.epochs if e[0] == "end"]
        == [
            ("end", 3, 0),
            ("end", 7, 1),
            ("end", 11, 2),
        ]
    )
    # deviation (MIGRATION.md): on_epoch_begin gets the next batch's index (0.2.5: the
    # previous batch's index, so epoch 1 begins at 3 there and at 4 here)
    begins = [e for e in b_rec.epochs if e[0] == "begin"]
    assert begins == [("begin", 0, 0), ("begin", 4, 1), ("begin", 8, 2)]
    assert [e for e in s_rec.epochs if e[0] == "begin"] == [
        ("begin", 0, 0),
        ("begin", 3, 1),
        ("begin", 7, 2),
    ]


def test_ema_matches_the_seed(b4t_seed) -> None:
    seed_net, b4t_net = _pair(b4t_seed)
    seed_ema = b4t_seed["optimizers"].extend_with_exponential_moving_average(seed_net, 0.9)
    b4t_ema = bt.extend_with_exponential_moving_average(b4t_net, 0.9)
    x, y = _data()
    for net, ema in ((seed_net, seed_ema), (b4t_net, b4t_ema)):
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        for i in range(0, N, BATCH):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i : i + BATCH]), y[i : i + BATCH]).backward()
            opt.step()
            ema.step()
    for name, value in seed_ema.ema_weights.items():
        torch.testing.assert_close(b4t_ema.shadow[name], value, rtol=0, atol=1e-6)
    raw = {k: v.clone() for k, v in b4t_net.state_dict().items()}
    seed_ema.apply_ema_weights()
    b4t_ema.apply_ema_weights()
    for a, b in zip(b4t_net.state_dict().values(), seed_net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    seed_ema.restore_raw_weights()
    b4t_ema.restore_raw_weights()
    for key, value in b4t_net.state_dict().items():
        assert torch.equal(value, raw[key])
    for a, b in zip(b4t_net.state_dict().values(), seed_net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_list_dataset_matches_the_seed(b4t_seed, tmp_path) -> None:
    seed_list = b4t_seed["snippets"].ListDataset
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("1\n2\n", encoding="utf-8")
    second.write_text("3\n", encoding="utf-8")

    def reader(base):
        class Lines(base):
            calls: ClassVar[list] = []

            @staticmethod
            def load_data(filenames):
                Lines.calls.append(filenames)
                names = [filenames] if isinstance(filenames, str) else filenames
                return [line for f in names for line in open(f, encoding="utf-8").read().split()]

        return Lines

    paths = [str(first), str(second)]
    seed_ds, b4t_ds = reader(seed_list)(paths), reader(bt.ListDataset)(paths)
    assert b4t_ds.data == seed_ds.data == ["1", "2", "3"]
    assert type(b4t_ds).calls == type(seed_ds).calls == [paths]  # once, with the list
    assert reader(bt.ListDataset)(str(first)).data == reader(seed_list)(str(first)).data
    # the default load_data returns its argument; data= keeps the list
    assert bt.ListDataset(paths).data == seed_list(paths).data == paths
    samples = [("a", 1), ("b", 0)]
    assert bt.ListDataset(data=samples).data == seed_list(data=samples).data
    assert len(bt.ListDataset(data=samples)) == len(seed_list(data=samples)) == 2
    assert (
        bt.ListDataset(data=samples, max_len=8).kwargs == seed_list(data=samples, max_len=8).kwargs
    )
    # deviation (MIGRATION.md): file_path and data together are refused (0.2.5 keeps file_path)
    assert seed_list(paths, data=samples).data == paths
    with pytest.raises(ValueError, match="not both"):
        bt.ListDataset(paths, data=samples)


def test_resume_recipe_matches_the_seed_s_steps(b4t_seed, tmp_path) -> None:
    """save_steps_params in on_batch_end, a crash, load_steps_params, fit: the same
    (epoch, step) positions as 0.2.5 are trained, each once."""
    x, y = _data(12)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)  # 3 batches an epoch
    seed_cb = b4t_seed["t4k_snippets"].Callback
    stop_at = 4  # epoch 1, local step 1

    def run(kind):
        base = seed_cb if kind == "seed" else bt.Callback
        steps_file = tmp_path / f"{kind}_steps.pt"

        class Crash(base):
            def on_batch_end(self, global_step, local_step, logs=None):
                self.model_ref.save_steps_params(steps_file)
                if global_step == stop_at:
                    raise KeyboardInterrupt

        class Trace(base):
            def __init__(self, model):
                if kind == "seed":
                    super().__init__()
                self.model_ref, self.seen = model, []

            def on_batch_end(self, global_step, local_step, logs=None):
                X = self.model_ref.train_X if kind == "seed" else self.trainer.current_batch[0]
                self.seen.append((global_step, local_step, float(X[0, 0])))

        first, again = _pair(b4t_seed)[0 if kind == "seed" else 1], None
        first.compile(nn.CrossEntropyLoss(), torch.optim.SGD(first.parameters(), lr=0.1))
        crash = Crash()
        crash.model_ref = first
        with pytest.raises(KeyboardInterrupt):
            first.fit(loader, None, 3, [crash], 1)
        again = _pair(b4t_seed)[0 if kind == "seed" else 1]
        again.compile(nn.CrossEntropyLoss(), torch.optim.SGD(again.parameters(), lr=0.1))
        again.load_steps_params(steps_file)
        trace = Trace(again)
        again.fit(loader, None, 3, [trace], 1)
        return torch.load(steps_file, weights_only=True), trace.seen

    seed_file, seed_seen = run("seed")
    b4t_file, b4t_seen = run("b4t")
    # the positions written and resumed from agree with torch4keras (global step 5 next)
    assert {k: b4t_file[k] for k in ("resume_epoch", "resume_step")} == {
        "resume_epoch": seed_file["resume_epoch"],
        "resume_step": seed_file["resume_step"],
    }
    assert (
        [s[:2] for s in b4t_seen] == [s[:2] for s in seed_seen] == [(g, g % 3) for g in range(5, 9)]
    )
    # deviation (MIGRATION.md): b4t resumes in the loader too (global step 5 trains batch
    # 2); 0.2.5 starts a fresh iterator, so step 5 trains batch 0 and step 6 batch 1 again
    batch_first = [float(x[i, 0]) for i in (0, 4, 8)]
    assert [s[2] for s in b4t_seen] == [batch_first[g % 3] for g in range(5, 9)]
    assert [s[2] for s in seed_seen] == [batch_first[i % 3] for i in range(4)]
    # a file 0.2.5 wrote resumes b4t at the same position
    net = _pair(b4t_seed)[1]
    net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1))
    net.load_steps_params(tmp_path / "seed_steps.pt")
    rec = _recorders(b4t_seed)[1]
    net.fit(loader, None, 3, [rec], 0)
    assert [s[:2] for s in rec.steps] == [s[:2] for s in seed_seen]


def test_evaluator_with_the_seed_s_arguments_saves_the_same_files(b4t_seed, tmp_path) -> None:
    seed_net, b4t_net = _pair(b4t_seed)
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)
    scores = [0.3, 0.5, 0.5, 0.4, 0.7]

    def scripted(base):
        class Scripted(base):
            calls = 0

            def evaluate(self):
                self.calls += 1
                return {"f1": scores[self.calls - 1]}

        return Scripted

    written = {}
    for name, net, base in (
        ("seed", seed_net, b4t_seed["t4k_snippets"].Evaluator),
        ("b4t", b4t_net, bt.Evaluator),
    ):
        net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1))
        out = tmp_path / name
        ev = scripted(base)(
            "f1",
            "max",
            0,
            str(out / "w_{epoch}.pt"),
            str(out / "opt_{epoch}.pt"),
            str(out / "steps_{epoch}.pt"),
        )
        net.fit(loader, None, 5, [ev], 1 if name == "seed" else 0)
        written[name] = sorted(p.name for p in out.iterdir())
        assert ev.best_perf == 0.7
    # saved at each epoch at least as good as the best: 1, 2, 3 (a tie) and 5
    assert written["b4t"] == written["seed"]
    assert "w_3.pt" in written["b4t"] and "w_4.pt" not in written["b4t"]
    for epoch in (1, 2, 3, 5):
        seed_steps = torch.load(tmp_path / "seed" / f"steps_{epoch}.pt", weights_only=True)
        b4t_steps = torch.load(tmp_path / "b4t" / f"steps_{epoch}.pt", weights_only=True)
        assert b4t_steps["resume_epoch"] == seed_steps["resume_epoch"] == epoch
        assert b4t_steps["resume_step"] == seed_steps["resume_step"] == 0


def test_deliberate_differences_in_stopping_and_cleanup(b4t_seed, tmp_path) -> None:
    """Each assert pins one MIGRATION.md row."""
    snippets = b4t_seed["t4k_snippets"]
    # mode='auto': 0.2.5 maximises only names holding 'acc'; b4t also f1, auc, perf
    import numpy as np

    assert snippets.EarlyStopping("val_f1").monitor_op is np.less
    assert bt.EarlyStopping("val_f1")._monitor.mode == "max"
    assert snippets.EarlyStopping("val_acc").monitor_op is np.greater
    assert bt.EarlyStopping("val_acc")._monitor.mode == "max"

    x, y = _data(12)
    x[5] = float("nan")  # batch 1 of 3 gives a NaN loss
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)
    seen = {}
    for name, (net, base, nan_cb) in zip(
        ("seed", "b4t"),
        (
            (_pair(b4t_seed)[0], snippets.Callback, snippets.TerminateOnNaN()),
            (_pair(b4t_seed)[1], bt.Callback, bt.TerminateOnNaN()),
        ),
    ):
        net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1))

        class Count(base):
            def __init__(self):
                super().__init__()
                self.steps = 0

            def on_batch_end(self, global_step, local_step, logs=None):
                self.steps += 1

        count = Count()
        net.fit(loader, None, 2, [nan_cb, count], 1 if name == "seed" else 0)
        seen[name] = count.steps
    # stop_training: 0.2.5 honours it at the epoch end only (the NaN epoch runs on)
    assert seen == {"seed": 3, "b4t": 2}

    # a monitored key missing from the logs: 0.2.5 warns and skips, b4t raises
    seed_net, b4t_net = _pair(b4t_seed)
    for net in (seed_net, b4t_net):
        net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1))
    loader = DataLoader(TensorDataset(*_data()), batch_size=BATCH)
    with pytest.warns(RuntimeWarning, match="val_acc"):
        seed_net.fit(loader, None, 1, [snippets.EarlyStopping("val_acc")], 1)
    with pytest.raises(KeyError, match="'val_acc', which is not in the logs"):
        b4t_net.fit(loader, None, 1, [bt.EarlyStopping("val_acc")], 0)

    # fit failing: 0.2.5 never calls on_train_end; b4t does (and re-raises)
    ended = {}
    for name, net, base in (
        ("seed", seed_net, snippets.Callback),
        ("b4t", b4t_net, bt.Callback),
    ):

        class Fails(base):
            tag = name

            def on_batch_end(self, global_step, local_step, logs=None):
                raise RuntimeError("boom")

            def on_train_end(self, logs=None):
                ended[self.tag] = True

        with pytest.raises(RuntimeError, match="boom"):
            net.fit(loader, None, 1, [Fails()], 1 if name == "seed" else 0)
    assert ended == {"b4t": True}

    # epochs < 1: 0.2.5 trains nothing and returns; b4t refuses
    assert seed_net.fit(loader, None, 0, None, 1).history == {}
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        b4t_net.fit(loader, None, 0, None, 0)

    # seed_everything with a seed out of range: 0.2.5 draws another one, b4t refuses
    assert bt.seed_everything(7) == 7
    snippets.seed_everything(-1)  # no error, a random seed
    with pytest.raises(ValueError, match="seed must be in"):
        bt.seed_everything(-1)


def test_metric_names_naming_loss_dict_keys_match_the_seed(b4t_seed) -> None:
    """torch4keras 0.0.4 accepts ``compile(metrics=[...])`` naming keys of the dict the loss
    returns (GPLinker's ``entity_loss``, UDA's ``loss_sup``) and logs them; so does b4t."""
    seed_net, b4t_net = _pair(b4t_seed)
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)

    def loss(y_pred, y_true):
        sup = nn.functional.cross_entropy(y_pred, y_true)
        unsup = 0.1 * y_pred.pow(2).mean()
        return {"loss": sup + unsup, "loss_sup": sup, "loss_unsup": unsup}

    runs = {}
    for name, net in (("seed", seed_net), ("b4t", b4t_net)):
        net.compile(
            loss,
            torch.optim.SGD(net.parameters(), lr=0.1),
            metrics=["loss_sup", "loss_unsup", "accuracy"],
        )
        rec = _recorders(b4t_seed)[0 if name == "seed" else 1]
        history = net.fit(loader, None, 2, [rec], 1 if name == "seed" else 0)
        runs[name] = (history, rec)
    (s_hist, s_rec), (b_hist, b_rec) = runs["seed"], runs["b4t"]
    for (_, _, slogs), (_, _, blogs) in zip(s_rec.steps, b_rec.steps, strict=True):
        assert set(blogs) == set(slogs) == {"size", "loss", "loss_sup", "loss_unsup", "accuracy"}
        for key in ("loss", "loss_sup", "loss_unsup", "accuracy"):
            assert blogs[key] == pytest.approx(slogs[key], abs=1e-6), key
    for key in ("loss_sup", "loss_unsup"):
        assert b_hist.history[key] == pytest.approx(s_hist.history[key], abs=1e-6)

    # a name that is neither a metric nor a key of the loss's dict: 0.0.4 logs nothing for
    # it, silently; b4t raises at the first batch (MIGRATION.md)
    seed_net, b4t_net = _pair(b4t_seed)
    seed_net.compile(loss, torch.optim.SGD(seed_net.parameters(), lr=0.1), metrics=["loss_sub"])
    rec = _recorders(b4t_seed)[0]
    seed_net.fit(loader, None, 1, [rec], 1)
    assert "loss_sub" not in rec.steps[0][2]
    b4t_net.compile(loss, torch.optim.SGD(b4t_net.parameters(), lr=0.1), metrics=["loss_sub"])
    with pytest.raises(ValueError, match=r"unknown metric name 'loss_sub'.*'loss_sup'"):
        b4t_net.fit(loader, None, 1, [], 0)


# ------------------------------------------------- torch4keras 0.0.4's other names


def test_reduce_lr_on_plateau_matches_the_seed(b4t_seed) -> None:
    seed_net, b4t_net = _pair(b4t_seed)
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)
    seed_cls = b4t_seed["t4k_snippets"].ReduceLROnPlateau
    runs = {}
    for name, net, cls in (("seed", seed_net, seed_cls), ("b4t", b4t_net, bt.ReduceLROnPlateau)):
        net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=2.0))
        rec = _recorders(b4t_seed)[0 if name == "seed" else 1]
        plateau = cls(monitor="loss", factor=0.5, patience=2, method="step", cooldown=1)
        net.fit(loader, None, 4, [plateau, rec], 1 if name == "seed" else 0)
        runs[name] = [logs["lr"] for _, _, logs in rec.steps]
    assert runs["b4t"] == runs["seed"]
    assert len(set(runs["seed"])) > 2  # the lr was cut several times
    for a, b in zip(b4t_net.state_dict().values(), seed_net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_metric_mapping_search_layer_and_iter_dataset_match_the_seed(b4t_seed, tmp_path) -> None:
    t4k = b4t_seed["t4k_snippets"]
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(6, 3, generator=gen), torch.randint(0, 3, (6,), generator=gen)
    pred, true = torch.rand(6, generator=gen) * 3, torch.rand(6, generator=gen) * 3
    for metric in ("accuracy", "acc"):
        assert bt.metric_mapping(metric, None, logits, labels) == t4k.metric_mapping(
            metric, None, logits, labels
        )
    for metric in ("mae", "MSE", "mape", "msle", "mean_squared_error"):
        assert bt.metric_mapping(metric, None, pred, true) == pytest.approx(
            t4k.metric_mapping(metric, None, pred, true), rel=1e-6
        ), metric
    for metric in ("loss", "f1_micro"):
        assert bt.metric_mapping(metric, None, pred, true) is None
        assert t4k.metric_mapping(metric, None, pred, true) is None

    def hit(y_pred, y_true):
        return {"hit": float((y_pred.argmax(-1) == y_true).float().mean())}

    assert bt.metric_mapping(hit, hit, logits, labels) == t4k.metric_mapping(
        hit, hit, logits, labels
    )

    snippets = b4t_seed["snippets"]
    seed_net, b4t_net = _pair(b4t_seed)
    b4t_net.fc2.bias.requires_grad_(False)
    seed_net.fc2.bias.requires_grad_(False)
    for name, first in (("fc", True), ("fc", False), ("bias", False), ("nothing", True)):
        ours = bt.search_layer(b4t_net, name, first)
        theirs = snippets.search_layer(seed_net, name, first)
        if theirs is None:
            assert ours is None
            continue
        ours, theirs = (ours, theirs) if not first else ([ours], [theirs])
        assert [tuple(p.shape) for p in ours] == [tuple(p.shape) for p in theirs]
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs))

    files = []
    for i in range(2):
        files.append(tmp_path / f"part{i}.txt")
        files[-1].write_text(f"a{i}\tb\nc{i}\n", encoding="utf-8")
    for arg in (str(files[0]), [str(f) for f in files]):
        assert list(bt.IterDataset(arg)) == list(snippets.IterDataset(arg))


def test_base_logger_and_progbar_match_the_seed(b4t_seed, capsys) -> None:
    t4k = b4t_seed["t4k_snippets"]
    batches = [
        {"size": 4, "loss": 1.5, "acc": 0.25, "lr": 0.1},
        {"size": 4, "loss": 1.0, "acc": 0.5, "lr": 0.05},
        {"size": 1, "loss": 0.5, "acc": 1.0, "lr": 0.01},
    ]
    ours, theirs = bt.BaseLogger(stateful_metrics=["lr"]), t4k.BaseLogger(stateful_metrics=["lr"])
    theirs.set_params({"metrics": ["loss", "acc", "lr"]})
    for logger in (ours, theirs):
        logger.on_epoch_begin(0, 0, {})
        for i, logs in enumerate(batches):
            logger.on_batch_end(i, i, dict(logs))
    ours_logs, theirs_logs = {}, {}
    ours.on_epoch_end(2, 0, ours_logs)
    theirs.on_epoch_end(2, 0, theirs_logs)
    assert ours_logs == pytest.approx(theirs_logs)

    bars = {}
    for name, cls in (("b4t", bt.Progbar), ("seed", t4k.Progbar)):
        bar = cls(target=3, verbose=2, stateful_metrics=["lr"])
        for i, logs in enumerate(batches, start=1):
            bar.update(i, [(k, v) for k, v in logs.items() if k != "size"])
        bars[name] = capsys.readouterr().out
    strip = re.compile(r" - \d+s")
    assert strip.sub("", bars["b4t"]) == strip.sub("", bars["seed"])
    assert "loss: 1.0000" in bars["b4t"] and "lr: 0.0100" in bars["b4t"]


def test_remote_monitor_posts_the_logged_values(b4t_seed) -> None:
    """Both post ``{field: json}`` to ``root + path`` at each epoch end; 0.0.4 writes each
    key's name where its value belongs (MIGRATION.md), b4t the value."""
    bodies: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers["Content-Length"])).decode()
            bodies.append(json.loads(urllib.parse.parse_qs(raw)["data"][0]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        seed_net, b4t_net = _pair(b4t_seed)
        x, y = _data()
        loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)
        seed_cls = b4t_seed["t4k_snippets"].RemoteMonitor
        for name, net, cls in (("seed", seed_net, seed_cls), ("b4t", b4t_net, bt.RemoteMonitor)):
            net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1))
            history = net.fit(loader, None, 1, [cls(root=root)], 1 if name == "seed" else 0)
    finally:
        server.shutdown()
        server.server_close()
    seed_body, b4t_body = bodies
    assert seed_body["epoch"] == b4t_body["epoch"] == 0
    assert seed_body["loss"] == "loss"  # 0.0.4: the key's name
    assert b4t_body["loss"] == pytest.approx(history.history["loss"][0])
