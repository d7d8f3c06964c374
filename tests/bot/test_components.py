"""The buttons under a result fit Discord's layout: at most 5 rows of 5, for every image count the bot allows."""

from __future__ import annotations

import pytest

from bot.components import result_view


@pytest.mark.parametrize("images", [1, 4, 5, 6, 10])
def test_result_buttons_fit_five_rows_of_five(images: int) -> None:
    """Reroll..PNG on the first row, then V1..Vn, then U1..Un, never more than 5 rows of 5 buttons."""
    rows: dict[int, list[str]] = {}
    for item in result_view(7, images).children:
        rows.setdefault(item.row or 0, []).append(str(getattr(item, "label", "")))
    assert len(rows) <= 5 and all(len(r) <= 5 for r in rows.values())
    labels = [label for row in sorted(rows) for label in rows[row]]
    assert labels[5:] == [f"V{i}" for i in range(1, images + 1)] + [f"U{i}" for i in range(1, images + 1)]


def test_an_upscaled_result_has_only_the_first_row() -> None:
    """An upscale's message has no V or U buttons."""
    assert [item.label for item in result_view(7, 1, upscaled=True).children] == \
        ["Reroll", "Info", "Delete", "Edit", "PNG"]
