import torch

from autolabel.tensors import compact, gather_rows, scatter_rows


def test_compact_gather_and_scatter_round_trip_only_touch_the_selected_entries():
    values = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[False, True, True], [True, False, False]])
    index, kept = compact(mask)
    assert index.tolist() == [[1, 2], [0, 1]] and kept.tolist() == [[True, True], [True, False]]
    picked = gather_rows(values, index)
    assert picked[0].tolist() == [[2.0, 3.0], [4.0, 5.0]]
    updated = scatter_rows(values, index, -picked, kept)
    expected = values.clone()
    expected[0, 1:] *= -1
    expected[1, 0] *= -1  # row 1's padding (index 1, kept False) stays as it was
    assert torch.equal(updated, expected)
    assert torch.equal(values, torch.arange(12.0).view(2, 3, 2))  # the input is not modified
