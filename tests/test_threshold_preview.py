"""What a threshold change would flip (ops.usecases.bank.threshold_preview), the Bank page's preview."""

from ops.usecases.bank import threshold_preview


def test_flips_count_each_side_and_ignore_unmatched():
    scores = [0.1, 0.2, 0.25, 0.3, None, 0.5]
    up = threshold_preview(scores, 0.3, 0.2)  # lowering: 0.2 and 0.25 newly reach it
    assert (up.scored, up.up, up.down) == (5, 2, 0)
    down = threshold_preview(scores, 0.2, 0.4)  # raising: 0.2, 0.25 and 0.3 fall below
    assert (down.up, down.down) == (0, 3)
    same = threshold_preview(scores, 0.3, 0.3)
    assert (same.up, same.down) == (0, 0) and same.to_dict()["scored"] == 5
    assert threshold_preview([], 0.1, 0.9).scored == 0
