"""Losses of bert4torch / bert4keras, each checked against its formula."""

from b4t.adversarial.losses.contrastive import ContrastiveLoss
from b4t.adversarial.losses.focal import FocalLoss
from b4t.adversarial.losses.label_smoothing import LabelSmoothingCrossEntropy
from b4t.adversarial.losses.multilabel import (
    MultilabelCategoricalCrossentropy,
    SparseMultilabelCategoricalCrossentropy,
)
from b4t.adversarial.losses.rdrop import RDropLoss
from b4t.adversarial.losses.temporal import TemporalEnsemblingLoss
from b4t.adversarial.losses.uda import UDALoss, tsa_threshold

__all__ = [
    "ContrastiveLoss",
    "FocalLoss",
    "LabelSmoothingCrossEntropy",
    "MultilabelCategoricalCrossentropy",
    "RDropLoss",
    "SparseMultilabelCategoricalCrossentropy",
    "TemporalEnsemblingLoss",
    "UDALoss",
    "tsa_threshold",
]
