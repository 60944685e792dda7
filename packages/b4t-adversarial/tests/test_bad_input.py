"""Bad input gives an error that names the problem."""

from __future__ import annotations

import pytest
import torch

from b4t.adversarial import (
    ContrastiveLoss,
    FocalLoss,
    LabelSmoothingCrossEntropy,
    MultilabelCategoricalCrossentropy,
    RDropLoss,
    SparseMultilabelCategoricalCrossentropy,
    UDALoss,
)

LOGITS = torch.zeros(4, 3)


@pytest.mark.parametrize("loss", [FocalLoss(), LabelSmoothingCrossEntropy()])
def test_class_losses_reject_bad_targets(loss):
    with pytest.raises(ValueError, match=r"class id 3 outside \[0, 3\)"):
        loss(LOGITS, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"class id -1 outside"):
        loss(LOGITS, torch.tensor([0, -1, 2, 2]))
    with pytest.raises(TypeError, match=r"integer class ids.*float32"):
        loss(LOGITS, torch.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"target shape \(3,\) must equal .* \(4,\)"):
        loss(LOGITS, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match=r"floating tensor.*int64"):
        loss(torch.zeros(4, 3, dtype=torch.long), torch.tensor([0, 1, 2, 1]))


def test_ignore_index_is_not_out_of_range():
    target = torch.tensor([0, -100, 2, 1])
    assert torch.isfinite(FocalLoss()(LOGITS, target))
    assert torch.isfinite(LabelSmoothingCrossEntropy()(LOGITS, target))


def test_focal_weight_length_and_settings():
    with pytest.raises(ValueError, match="weight/alpha has 2 entries but logits have 3 classes"):
        FocalLoss(weight=[1.0, 2.0])(LOGITS, torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ValueError, match=r"either weight .* or alpha"):
        FocalLoss(weight=[1.0, 2.0], alpha=0.3)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="reduction must be one of"):
        FocalLoss(reduction="avg")


def test_multilabel_shape_and_values():
    with pytest.raises(ValueError, match=r"y_true shape \(4, 2\) must equal y_pred shape \(4, 3\)"):
        MultilabelCategoricalCrossentropy()(LOGITS, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="only 0 and 1"):
        MultilabelCategoricalCrossentropy()(LOGITS, torch.full((4, 3), 2))
    with pytest.raises(ValueError, match=r"class ids outside \[0, 3\)"):
        SparseMultilabelCategoricalCrossentropy()(LOGITS, torch.tensor([[0], [1], [2], [3]]))
    with pytest.raises(TypeError, match="integer tensor"):
        SparseMultilabelCategoricalCrossentropy()(LOGITS, torch.zeros(4, 1))
    with pytest.raises(ValueError, match="every axis but the last"):
        SparseMultilabelCategoricalCrossentropy()(LOGITS, torch.zeros(3, 1, dtype=torch.long))


def test_pair_losses():
    with pytest.raises(ValueError, match=r"labels shape .* must equal distances shape"):
        ContrastiveLoss()(torch.zeros(4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="only pos_id=1 and neg_id=0"):
        ContrastiveLoss()(torch.zeros(2), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="must be even"):
        RDropLoss()(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="rank must be"):
        RDropLoss(rank="sideways")
    with pytest.raises(ValueError, match=r"y_pred1 shape .* and y_pred2 shape"):
        RDropLoss()(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))


def test_uda_layout_and_schedule():
    with pytest.raises(ValueError, match="even number of unsupervised rows"):
        UDALoss()(torch.zeros(5, 3), torch.tensor([0, 1]), 0, 10)
    with pytest.raises(ValueError, match="tsa_schedule must be None or one of"):
        UDALoss("cosine")
