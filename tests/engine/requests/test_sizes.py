"""Sizes: WxH parsing, free-form bounds, SIZES lists and aspect ratios resolved to allowed sizes."""

from __future__ import annotations

import pytest

from engine.requests.sizes import SDXL_SIZES, Size, SizeError, parse_size_list, resolve_size

SDXL = parse_size_list(SDXL_SIZES)


@pytest.mark.parametrize(("text", "expected"), [
    ("1024x1024", Size(1024, 1024)),
    (" 832 X 1216 ", Size(832, 1216)),
    ("640×1536", Size(640, 1536)),
    ("96*64", Size(96, 64)),
])
def test_parse_accepts_width_x_height(text: str, expected: Size) -> None:
    """WxH parses with x, X, × or * and surrounding spaces."""
    assert Size.parse(text) == expected


@pytest.mark.parametrize("text", ["1024", "1024x", "x1024", "ten by ten", "1024x1024x3", "-64x64"])
def test_parse_rejects_malformed_text_with_example(text: str) -> None:
    """Text that is not WxH is rejected with an example of the right form."""
    with pytest.raises(SizeError, match="WIDTHxHEIGHT, for example 1024x1024"):
        Size.parse(text)


@pytest.mark.parametrize(("size", "side"), [
    (Size(60, 64), "width 60"), (Size(64, 100), "height 100"), (Size(56, 64), "width 56"),
    (Size(2056, 64), "width 2056"),
])
def test_free_form_size_outside_bounds_names_side_and_range(size: Size, side: str) -> None:
    """A free-form side must be a multiple of 8 from 64 to 2048; the message says so."""
    with pytest.raises(SizeError) as info:
        size.check_free_form()
    assert side in str(info.value) and "multiple of 8 from 64 to 2048" in str(info.value)


@pytest.mark.parametrize("size", [Size(64, 64), Size(2048, 2048), Size(72, 1000)])
def test_free_form_size_within_bounds_passes(size: Size) -> None:
    """Multiples of 8 from 64 to 2048 are accepted."""
    size.check_free_form()


def test_size_list_drops_duplicates_and_blanks() -> None:
    """SIZES keeps order, skips empty entries and repeated sizes."""
    assert parse_size_list("64x64,,96x64, 64x64 ,") == (Size(64, 64), Size(96, 64))


def test_sdxl_list_is_the_nine_buckets() -> None:
    """The built-in list is the nine SDXL training resolutions, all about one megapixel."""
    assert len(SDXL) == 9
    assert all(0.9e6 < s.width * s.height < 1.1e6 for s in SDXL)


@pytest.mark.parametrize(("ratio", "expected"), [
    ("1:1", "1024x1024"), ("16:9", "1344x768"), ("9:16", "768x1344"), ("4:3", "1152x896"), ("3:4", "896x1152"),
    ("3:2", "1216x832"), ("2:3", "832x1216"), ("21:9", "1536x640"), ("9:21", "640x1536"), ("1.5:1", "1216x832"),
    ("square", "1024x1024"), ("landscape", "1216x832"), ("portrait", "832x1216"), ("wide", "1344x768"),
    ("tall", "768x1344"), ("Portrait", "832x1216"),
])
def test_aspect_ratio_resolves_to_nearest_allowed_size(ratio: str, expected: str) -> None:
    """An aspect ratio (or its name) picks the allowed size with the closest shape."""
    assert str(resolve_size(ratio, SDXL)) == expected


def test_aspect_ratio_only_picks_from_allowed_sizes() -> None:
    """With a short SIZES list, a ratio resolves within it."""
    allowed = parse_size_list("64x64,96x64,64x96")
    assert resolve_size("16:9", allowed) == Size(96, 64)
    assert resolve_size("9:16", allowed) == Size(64, 96)


def test_explicit_allowed_size_is_kept() -> None:
    """A WxH that is in the list resolves to itself."""
    assert resolve_size("832x1216", SDXL) == Size(832, 1216)


def test_size_not_offered_lists_the_options() -> None:
    """A WxH that is not in SIZES is refused with every allowed size listed."""
    with pytest.raises(SizeError) as info:
        resolve_size("512x512", SDXL)
    assert "512x512" in str(info.value)
    assert all(str(s) in str(info.value) for s in SDXL)


@pytest.mark.parametrize("name", ["panorama", "banana", "16/9"])
def test_unknown_aspect_name_lists_the_options(name: str) -> None:
    """An unknown aspect name is refused; the message shows a ratio example and the allowed sizes."""
    with pytest.raises(SizeError) as info:
        resolve_size(name, SDXL)
    assert name in str(info.value) and "16:9" in str(info.value)
    assert all(str(s) in str(info.value) for s in SDXL)


@pytest.mark.parametrize(("ratio", "message"), [
    ("0:9", "two positive numbers"), ("16:0", "two positive numbers"), ("1:9", "between 1:8 and 8:1"),
    ("20:1", "between 1:8 and 8:1"),
])
def test_degenerate_aspect_ratio_is_refused(ratio: str, message: str) -> None:
    """A zero or extreme ratio is refused with the allowed form or range."""
    with pytest.raises(SizeError, match=message):
        resolve_size(ratio, SDXL)


@pytest.mark.parametrize(("size", "label"), [
    (Size(1024, 1024), "1:1"), (Size(1344, 768), "7:4"), (Size(768, 1344), "4:7"), (Size(1152, 896), "9:7"),
    (Size(1216, 832), "19:13"), (Size(1536, 640), "12:5"), (Size(96, 64), "3:2"), (Size(1000, 104), "125:13"),
])
def test_aspect_label(size: Size, label: str) -> None:
    """Sizes carry a short aspect label for menus (a common ratio within 3 %, else the reduced fraction)."""
    assert size.aspect_label() == label
