import math

import torch

from autolabel.verify import VerifyConfig, box_iou_2d, mask_iou, plausibility, verify


def test_box_iou_of_box_shifted_by_half_its_width_is_one_third():
    a = torch.tensor([[0.0, 0.0, 4.0, 2.0]])
    assert torch.isclose(box_iou_2d(a, a + torch.tensor([2.0, 0, 2.0, 0])), torch.tensor(1 / 3))


def test_mask_iou_binarises_at_one_half():
    a = torch.tensor([[[0.9, 0.6, 0.4, 0.0]]])
    b = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
    assert torch.isclose(mask_iou(a, b), torch.tensor([1 / 3]))


def test_plausibility_is_the_chi_square_survival_probability():
    # For two dimensions the survival function is exp(-x / 2).
    assert torch.isclose(plausibility(torch.tensor([2.0]), 2), torch.tensor(math.exp(-1.0)))


def test_a_good_fit_is_accepted_with_no_reasons():
    verdict = verify(0.9, 0.95, 0.6, finite=True, weak=False)
    assert verdict.accepted and verdict.reasons == ()
    assert math.isclose(verdict.score, (0.9 + 0.95 + 0.6) / 3)


def test_low_inlier_fraction_rejects_and_says_why():
    verdict = verify(0.6, 0.1, 0.2, finite=True, weak=False)
    assert not verdict.accepted
    assert any("10% of the object's points" in reason for reason in verdict.reasons)


def test_weak_labels_are_not_accepted_unless_asked_and_diverged_fits_score_zero():
    assert not verify(0.9, math.nan, 0.9, finite=True, weak=True).accepted
    assert verify(0.9, math.nan, 0.9, True, True, VerifyConfig(accept_weak=True)).accepted
    diverged = verify(0.9, 0.9, 0.9, finite=False, weak=False)
    assert diverged.score == 0 and not diverged.accepted and "diverged" in diverged.reasons[0]
