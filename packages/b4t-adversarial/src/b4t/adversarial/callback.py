"""``AdversarialTraining``: FGM, PGD, VAT and gradient penalty as a b4t-trainer callback.

Everything runs in ``on_after_backward``, after the micro-batch's own backward
and before clipping and the optimizer step. Each extra loss goes through
``trainer.backward``, so it gets the same ``1 / grad_accumulation_steps``
scaling and AMP grad scaler as the main loss, and the extra forward passes run
under the trainer's autocast (``trainer.compute_loss``; VAT's model-only passes use
``trainer.autocast()`` and ``trainer.forward``, so a stateful loss is not called again).

Per micro-batch, with ``L(E)`` the compiled loss at embedding ``E``:

- ``fgm``: grad += dL(E + r)/dtheta, ``r = epsilon * g / ||g||`` (``g`` = embedding grad so far).
- ``pgd``: K ascent steps of size ``alpha`` projected on ``||r|| <= epsilon``; grad +=
  dL(E + r_K)/dtheta only (intermediate gradients are discarded, the real ones restored).
- ``vat``: grad += d L_vat/dtheta (see ``b4t.adversarial.vat``); the plain loss is not
  back-propagated a second time (bert4torch 0.2.5 does, doubling its gradient).
- ``gradient_penalty``: grad += d/dtheta [0.5 * epsilon * ||dL/dE||^2] (bert4keras; bert4torch
  0.2.5 adds the penalty as a constant and back-propagates the loss again, which doubles
  the plain gradient instead).

As in bert4torch's hand-written loops, the FGM/PGD direction is the embedding
gradient accumulated so far in the optimizer step (with ``grad_accumulation_steps
> 1`` it includes earlier micro-batches of the same step).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from b4t.adversarial._embedding import find_embedding_parameters
from b4t.adversarial.fgm import FGM
from b4t.adversarial.pgd import PGD
from b4t.adversarial.vat import NORM_TYPES, VAT, select_output
from b4t.trainer import Callback

# bert4torch 0.2.5's keys and defaults per mode (``epsilon`` / ``emb_name`` are set for
# every mode and ``K`` also for vat, where they are unused, as in bert4torch).
DEFAULTS: dict[str, dict[str, Any]] = {
    "fgm": {"epsilon": 1.0, "emb_name": "word_embeddings"},
    "pgd": {"epsilon": 1.0, "emb_name": "word_embeddings", "K": 3, "alpha": 0.3},
    "gradient_penalty": {"epsilon": 1.0, "emb_name": "word_embeddings"},
    "vat": {
        "epsilon": 1.0,
        "emb_name": "word_embeddings",
        "K": 3,
        "noise_var": 1e-5,
        "noise_gamma": 1e-6,
        "adv_step_size": 1e-3,
        "adv_alpha": 1,
        "norm_type": "l2",
        "rank": 0,
    },
}
#: b4t's extra key names: ``output_index`` is vat's ``rank``.
ALIASES: dict[str, dict[str, str]] = {"vat": {"output_index": "rank"}}
MODES = (None, "", *DEFAULTS)


def _check_settings(mode: str, settings: dict[str, Any]) -> None:
    for key in ("epsilon", "alpha", "noise_var", "adv_step_size", "adv_alpha"):
        if key in settings:
            value = settings[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"adversarial[{key!r}] must be a number >= 0, got {value!r}")
    if mode == "pgd" and (
        isinstance(settings["K"], bool) or not isinstance(settings["K"], int) or settings["K"] < 1
    ):
        raise ValueError(f"adversarial['K'] must be an int >= 1, got {settings['K']!r}")
    if mode == "vat":
        if settings["norm_type"] not in NORM_TYPES:
            raise ValueError(
                f"adversarial['norm_type'] must be one of {NORM_TYPES}, "
                f"got {settings['norm_type']!r}"
            )
        rank = settings["rank"]
        if isinstance(rank, bool) or not isinstance(rank, (int, str)):
            raise TypeError(
                f"adversarial['rank'] must be an int (tuple/list output) or a str (dict output), "
                f"got {rank!r}"
            )


def _merge(mode: str, given: dict[str, Any]) -> dict[str, Any]:
    """bert4torch's defaults for ``mode`` updated with ``given`` (aliases resolved)."""
    aliases = ALIASES.get(mode, {})
    unknown = sorted(set(given) - set(DEFAULTS[mode]) - set(aliases))
    if unknown:
        raise ValueError(
            f"unknown setting(s) {unknown} for mode {mode!r}; "
            f"known: {sorted(set(DEFAULTS[mode]) | set(aliases))}"
        )
    merged = {**DEFAULTS[mode]}
    for key, value in given.items():
        target = aliases.get(key, key)
        if target != key and target in given and given[target] != value:
            raise ValueError(
                f"adversarial[{key!r}]={value!r} and adversarial[{target!r}]={given[target]!r} "
                "name the same setting; give one of them"
            )
        merged[target] = value
    return merged


def _number(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value


class AdversarialTraining(Callback):
    """Adversarial training / gradient penalty through the trainer's ``on_after_backward``.

    Args:
        mode: ``'fgm'``, ``'pgd'``, ``'vat'``, ``'gradient_penalty'``, or ``None`` / ``''``
            (off).
        adversarial: settings for the mode (bert4torch's keys and defaults, in ``DEFAULTS``;
            ``output_index`` is accepted for vat's ``rank``); an unknown key is an error.
            Not modified.

    The batch logs follow bert4torch 0.2.5: with ``fgm`` / ``pgd`` ``loss`` (and the loss
    parts) are those of the (last) adversarial forward; ``gradient_penalty`` adds
    ``0.5 * epsilon * ||dL/dE||^2`` to ``loss``; ``vat`` adds its loss to ``loss`` and logs
    ``loss_sup`` (the plain loss) and ``loss_unsup`` (the VAT loss).
    """

    def __init__(self, mode: str | None = None, adversarial: Mapping[str, Any] | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown adversarial mode {mode!r}; choose one of {MODES}")
        given = dict(adversarial or {})
        self.mode = mode or None
        self.adversarial: dict[str, Any] = {}
        if self.mode is not None:
            self.adversarial = _merge(self.mode, given)
            _check_settings(self.mode, self.adversarial)
        self.attacker: FGM | PGD | VAT | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Build the attacker for ``trainer.module`` (fails early on a bad ``emb_name``)."""
        self._release()
        if self.mode is None:
            return
        module = self.trainer.module
        if self.mode == "vat":
            self.attacker = VAT(module, **self.adversarial, track=False)
        else:
            find_embedding_parameters(module, self.adversarial["emb_name"])
            if self.mode == "fgm":
                self.attacker = FGM(module)
            elif self.mode == "pgd":
                self.attacker = PGD(module)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Drop the attacker (VAT keeps no hook between batches; this is a safety net)."""
        self._release()

    def _release(self) -> None:
        if isinstance(self.attacker, VAT):
            self.attacker.remove()
        self.attacker = None

    def on_after_backward(
        self, global_step: int, local_step: int, logs: dict[str, Any] | None = None
    ) -> None:
        """Add this micro-batch's adversarial gradient to the parameters' ``.grad``."""
        if self.mode is None:
            return
        if self.attacker is None and self.mode != "gradient_penalty":
            self.on_train_begin()
        X, y = self.trainer.current_batch
        logs = {} if logs is None else logs
        if self.mode == "fgm":
            self._fgm(X, y, logs)
        elif self.mode == "pgd":
            self._pgd(X, y, logs)
        elif self.mode == "gradient_penalty":
            self._gradient_penalty(X, y, logs)
        else:
            self._vat(X, y, logs)

    @staticmethod
    def _log_loss(logs: dict[str, Any], loss: torch.Tensor, extras: Mapping[str, Any]) -> None:
        logs["loss"] = float(loss.detach())
        for key, value in extras.items():
            logs[key] = _number(value)

    def _fgm(self, X: Any, y: Any, logs: dict[str, Any]) -> None:
        assert isinstance(self.attacker, FGM)
        self.attacker.attack(**self.adversarial)
        try:
            loss, extras = self.trainer.compute_loss(X, y)
            self.trainer.backward(loss)
        finally:
            self.attacker.restore(**self.adversarial)
        self._log_loss(logs, loss, extras)

    def _pgd(self, X: Any, y: Any, logs: dict[str, Any]) -> None:
        assert isinstance(self.attacker, PGD)
        steps = self.adversarial["K"]
        self.attacker.backup_grad()
        try:
            for t in range(steps):
                self.attacker.attack(**self.adversarial, is_first_attack=(t == 0))
                if t != steps - 1:
                    self.attacker.zero_grad()
                else:
                    self.attacker.restore_grad()
                loss, extras = self.trainer.compute_loss(X, y)
                self.trainer.backward(loss)
        finally:
            if self.attacker.grad_backup:  # an exception before the last step
                self.attacker.restore_grad()
            self.attacker.restore(**self.adversarial)
        self._log_loss(logs, loss, extras)

    def _gradient_penalty(self, X: Any, y: Any, logs: dict[str, Any]) -> None:
        # bert4torch penalises the first parameter whose name contains emb_name
        _, param = find_embedding_parameters(self.trainer.module, self.adversarial["emb_name"])[0]
        # the penalty is differentiated twice; SDPA's fused kernels (flash / memory-efficient,
        # CPU and CUDA) have no double backward, the math kernel has
        with sdpa_kernel(SDPBackend.MATH):
            loss, _ = self.trainer.compute_loss(X, y)
        (grad,) = torch.autograd.grad(loss, [param], create_graph=True, allow_unused=True)
        if grad is None:  # the loss does not depend on the embedding
            return
        penalty = 0.5 * self.adversarial["epsilon"] * grad.float().pow(2).sum()
        if penalty.requires_grad:
            self.trainer.backward(penalty)
        if "loss" in logs:
            logs["loss"] = logs["loss"] + float(penalty.detach())

    def _vat(self, X: Any, y: Any, logs: dict[str, Any]) -> None:
        assert isinstance(self.attacker, VAT)
        trainer = self.trainer

        def forward() -> Any:
            with trainer.autocast():
                return trainer.forward(X)

        output, embed_shape = self.attacker.run_clean(forward)
        logits = select_output(output, self.attacker.output_index)
        loss = self.attacker.adversarial_loss(forward, logits, embed_shape)
        main = logs.get("loss")
        if main is not None:
            logs["loss_sup"] = main
        if loss is None:  # KL gradient not finite: bert4torch skips the term
            logs["loss_unsup"] = 0.0
            return
        trainer.backward(loss)
        logs["loss_unsup"] = float(loss.detach())
        if main is not None:
            logs["loss"] = main + logs["loss_unsup"]
