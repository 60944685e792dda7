"""b4t.adversarial: FGM, PGD, VAT, gradient penalty, R-Drop and special losses for b4t-trainer."""

from b4t.adversarial._version import __version__
from b4t.adversarial.callback import AdversarialTraining
from b4t.adversarial.fgm import FGM
from b4t.adversarial.losses import (
    ContrastiveLoss,
    FocalLoss,
    LabelSmoothingCrossEntropy,
    MultilabelCategoricalCrossentropy,
    RDropLoss,
    SparseMultilabelCategoricalCrossentropy,
    TemporalEnsemblingLoss,
    UDALoss,
    tsa_threshold,
)
from b4t.adversarial.mixup import MixUp
from b4t.adversarial.pgd import PGD
from b4t.adversarial.vat import VAT

__all__ = [
    "FGM",
    "PGD",
    "VAT",
    "AdversarialTraining",
    "ContrastiveLoss",
    "FocalLoss",
    "LabelSmoothingCrossEntropy",
    "MixUp",
    "MultilabelCategoricalCrossentropy",
    "RDropLoss",
    "SparseMultilabelCategoricalCrossentropy",
    "TemporalEnsemblingLoss",
    "UDALoss",
    "__version__",
    "tsa_threshold",
]
