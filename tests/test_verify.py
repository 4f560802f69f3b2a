import dataclasses
import math

import pytest
import torch

from autolabel.verify import (
    Observation,
    VerifyConfig,
    box_iou_2d,
    length_seen,
    mask_iou,
    plausibility,
    verify,
    visible_share,
)


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


GOOD = Observation(image_iou=0.9, box_iou=0.9, inlier_fraction=0.95, plausibility=0.6,
                   points=200, size_z2=0.5, distance=20.0, in_view=1.0,
                   ground_gap=0.02)


def test_a_good_fit_is_accepted_with_no_reasons_and_scored_by_agreement_support_and_size():
    verdict = verify(GOOD)
    assert verdict.accepted and verdict.reasons == ()
    support = 1 - math.exp(-200 / 15)
    assert math.isclose(verdict.score, (0.9 + 0.95 + 0.6) / 3 * support * math.exp(-0.125))


def test_an_unusual_size_lowers_the_score_and_says_why():
    odd = verify(dataclasses.replace(GOOD, size_z2=12.0))
    assert odd.score < verify(GOOD).score * 0.1
    assert any("unusual size" in reason for reason in odd.reasons)


def test_fewer_points_give_a_lower_score_for_the_same_agreement():
    scores = [verify(dataclasses.replace(GOOD, points=n)).score for n in (4, 15, 60)]
    assert scores[0] < scores[1] < scores[2]
    assert math.isclose(scores[1], (0.9 + 0.95 + 0.6) / 3 * (1 - math.exp(-1)) * math.exp(-0.125))


def test_a_label_whose_points_span_a_quarter_of_its_length_loses_three_quarters_of_the_weight():
    full = verify(dataclasses.replace(GOOD, length_seen=1.0))
    quarter = verify(dataclasses.replace(GOOD, length_seen=0.25))
    assert math.isclose(full.score, verify(GOOD).score)  # no points: no factor
    assert math.isclose(quarter.score, full.score * (1 - 0.2 * 0.75))
    assert quarter.evidence["length_seen"] == 0.25


def test_a_label_two_fifths_visible_behind_nearer_objects_loses_that_share_of_the_weight():
    hidden = verify(dataclasses.replace(GOOD, visible=0.4))
    assert math.isclose(hidden.score, verify(GOOD).score * (1 - 0.3 * 0.6))
    assert hidden.evidence["visible"] == 0.4


def test_visible_share_counts_the_silhouette_outside_nearer_masks():
    silhouette = torch.zeros(2, 4, 4)
    silhouette[:, 1:3, :] = 0.5  # 8 half-covered pixels
    weight = torch.ones(2, 4, 4)
    weight[0, :, :1] = 0  # a nearer car over the first column
    share = visible_share(silhouette, weight)
    assert torch.allclose(share, torch.tensor([0.75, 1.0]))
    assert visible_share(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)).item() == 1.0


def test_length_seen_measures_along_the_heading_of_a_turned_box():
    # A 4 m box turned a quarter turn about camera y: its heading is camera -z. Points 1 m
    # apart along x (across it) and 3 m apart along z (along it).
    quarter = torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])[None]
    points = torch.tensor([[[10.0, 0, 20], [11, 0, 20], [10.5, 0, 23]]])
    share = length_seen(points, torch.ones(1, 3, dtype=torch.bool),
                        torch.tensor([[10.5, 0, 21.5]]), quarter, torch.tensor([[4.0, 2, 1.5]]))
    assert torch.allclose(share, torch.tensor([0.75]))
    none = length_seen(points, torch.zeros(1, 3, dtype=torch.bool), torch.zeros(1, 3), quarter,
                       torch.tensor([[4.0, 2, 1.5]]))
    assert torch.isnan(none).all()


def test_low_inlier_fraction_rejects_and_says_why():
    verdict = verify(dataclasses.replace(GOOD, inlier_fraction=0.1))
    assert not verdict.accepted
    assert any("10% of the object's points" in reason for reason in verdict.reasons)


@pytest.mark.parametrize(("change", "says"), [
    ({"box_iou": 0.0}, "does not reproject onto the detection"),
    ({"distance": 394.0}, "beyond the sensor's range"),
    ({"ground_gap": -25.0}, "from the ground plane"),
    ({"image_iou": 0.65, "has_mask": True}, "does not cover its instance mask"),
])
def test_sanity_gates_reject_a_label_whatever_its_score(change, says):
    verdict = verify(dataclasses.replace(GOOD, **change))
    assert not verdict.accepted and verdict.score > 0.5
    assert any(says in reason for reason in verdict.reasons)


def test_no_ground_plane_is_not_a_gate():
    assert verify(dataclasses.replace(GOOD, ground_gap=None)).accepted


def test_the_same_image_iou_with_a_box_instead_of_a_mask_passes():
    assert verify(dataclasses.replace(GOOD, image_iou=0.65)).accepted


def test_weak_labels_are_not_accepted_unless_asked_and_diverged_fits_score_zero():
    weak = dataclasses.replace(GOOD, inlier_fraction=math.nan, points=0, weak=True)
    strong_support = VerifyConfig(weak_distance=math.inf, accept_weak=True)
    assert not verify(weak).accepted
    assert verify(weak, strong_support).accepted
    diverged = verify(dataclasses.replace(GOOD, finite=False))
    assert diverged.score == 0 and not diverged.accepted and "diverged" in diverged.reasons[0]


def test_a_weak_labels_support_halves_every_weak_distance_times_ln_2():
    config = VerifyConfig(weak_distance=20.0)
    near, far = (verify(dataclasses.replace(GOOD, inlier_fraction=math.nan, points=0,
                                            weak=True, distance=d), config)
                 for d in (10.0, 10.0 + 20.0 * math.log(2)))
    assert math.isclose(far.evidence["support"], near.evidence["support"] / 2)
    assert math.isclose(far.score, near.score / 2)


def test_a_weak_label_whose_box_is_cut_on_two_edges_has_half_the_support():
    weak = dataclasses.replace(GOOD, inlier_fraction=math.nan, points=0, weak=True)
    cut = verify(dataclasses.replace(weak, bound_edges=2))
    assert math.isclose(cut.evidence["support"], verify(weak).evidence["support"] / 2)
    # with LiDAR points the edges do not enter the support
    assert verify(dataclasses.replace(GOOD, bound_edges=2)).score == verify(GOOD).score


def test_a_label_mostly_outside_the_image_scores_its_share_in_view_and_says_why():
    cut = verify(dataclasses.replace(GOOD, in_view=0.3))
    assert math.isclose(cut.score, 0.3 * verify(GOOD).score)
    assert any("outside the image" in reason for reason in cut.reasons) and not cut.accepted
