"""BERT-whitening (Su et al. 2021): map sentence vectors to zero mean and identity covariance."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

__all__ = ["BERT_WHITENING"]


class BERT_WHITENING:
    """Whitening transform fitted on sentence vectors, then L2-normalised output.

    ``compute_kernel_bias(sentence_vec)`` takes a list of ``[n_i, H]`` tensors and sets
    ``bias = -mean`` ``[1, H]`` and ``kernel = U diag(s)^-1/2`` ``[H, H]`` from the SVD
    ``cov = U diag(s) U^T`` of their (unbiased) covariance, so ``(x + bias) @ kernel`` has
    identity covariance. ``transform_and_normalize(vecs [n, H])`` applies it (when fitted)
    and divides each row by its L2 norm. ``save_whiten(path)`` / ``load_whiten(path)``
    store ``{'kernel', 'bias'}`` with ``torch.save`` (loaded with ``weights_only=True``).
    """

    def __init__(self) -> None:
        self.kernel: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def compute_kernel_bias(self, sentence_vec: Sequence[torch.Tensor]) -> None:
        """Fit ``bias [1, H]`` and ``kernel [H, H]`` on a list of ``[n_i, H]`` sentence vectors.

        Raises:
            ValueError: fewer than two vectors, or vectors that are not rows of ``[n, H]``.
        """
        vecs = torch.cat(list(sentence_vec), dim=0)
        if vecs.dim() != 2 or vecs.shape[0] < 2:
            raise ValueError(
                f"BERT_WHITENING needs at least 2 vectors of shape [n, H], got {tuple(vecs.shape)}"
            )
        self.bias = -vecs.mean(dim=0, keepdim=True)
        u, s, _ = torch.linalg.svd(torch.cov(vecs.T))
        # inverse of (U diag(sqrt s))^T, U orthogonal: U diag(1 / sqrt s)
        self.kernel = torch.linalg.inv((u * s.sqrt()).T)

    def save_whiten(self, path: str | os.PathLike) -> None:
        """Write ``{'kernel', 'bias'}`` to ``path`` with ``torch.save``."""
        torch.save({"kernel": self.kernel, "bias": self.bias}, path)

    def load_whiten(self, path: str | os.PathLike) -> None:
        """Read ``{'kernel', 'bias'}`` from ``path`` (``weights_only=True``).

        Raises:
            KeyError: the file lacks one of the two tensors.
        """
        whiten = torch.load(path, weights_only=True)
        missing = {"kernel", "bias"} - set(whiten)
        if missing:
            raise KeyError(f"whitening file {os.fspath(path)} lacks {sorted(missing)}")
        self.kernel, self.bias = whiten["kernel"], whiten["bias"]

    def transform_and_normalize(self, vecs: torch.Tensor) -> torch.Tensor:
        """Whiten ``vecs [n, H]`` (when fitted) and scale each row to unit L2 norm -> ``[n, H]``."""
        if self.kernel is not None and self.bias is not None:
            vecs = (vecs + self.bias) @ self.kernel
        return vecs / vecs.pow(2).sum(dim=1, keepdim=True).sqrt()
