"""Durations (engine/dsl/durations.py) and sizes (engine/dsl/sizes.py)."""

from __future__ import annotations

import pytest

from engine.dsl.durations import parse_duration
from engine.dsl.provider import compile_provider
from engine.dsl.sizes import (
    STANDARD_RATIOS,
    Size,
    fit_size,
    nearest_ratio,
    parse_ratio,
    parse_size,
    size_for_ratio,
)
from engine.dsl.spec import SizeRule

# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("3s", 3.0),
        ("1.5m", 90.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("45", 45.0),
        ("0", 0.0),
        ("0.5", 0.5),
        (" 3 s ", 3.0),
        ("3 ms", 0.003),
        (5, 5.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    result = parse_duration(value)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", "s", "abc", "5 minutes", "1d", "3S", "-5s", "1.5.2s", ".5s", "1e3", "3sec", None, [3]],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"^not a duration: .* \(use e\.g\. 500ms, 3s, 10m, 1h\)$"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, False])
def test_parse_duration_rejects_booleans(value: bool) -> None:
    with pytest.raises(ValueError, match=r"^not a duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", [-1, -0.5])
def test_parse_duration_rejects_negative_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(value)


# --- parsing sizes and ratios ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024x768", (1024, 768)),
        ("512X512", (512, 512)),
        ("640×480", (640, 480)),
        ("64*64", (64, 64)),
        (" 1 x 1 ", (1, 1)),
        ("16384x16384", (16384, 16384)),
    ],
)
def test_parse_size(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1024", "x", "1024x", "abc", "1024x768x2", "-1x5", "123456x1"])
def test_parse_size_rejects_shapes(text: str) -> None:
    with pytest.raises(ValueError, match="size must look like 1024x1024"):
        parse_size(text)


@pytest.mark.parametrize("text", ["0x10", "10x0", "16385x10", "512x51200"])
def test_parse_size_rejects_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match="size out of range"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "ratio"),
    [("16:9", (16, 9)), (" 1 : 1 ", (1, 1)), ("0:1", None), ("16x9", None), ("100:1", None)],
)
def test_parse_ratio(text: str, ratio: tuple[int, int] | None) -> None:
    assert parse_ratio(text) == ratio


@pytest.mark.parametrize(
    ("width", "height", "ratio"),
    [
        (1024, 1024, "1:1"),
        (1920, 1080, "16:9"),
        (1080, 1920, "9:16"),
        (1536, 1024, "3:2"),
        (1000, 1500, "2:3"),
        (1024, 768, "4:3"),
        (2560, 1080, "21:9"),
        (1080, 1350, "4:5"),
        (1350, 1080, "5:4"),
        (1000, 1010, "1:1"),
        (10000, 100, "21:9"),
        (100, 10000, "9:21"),
    ],
)
def test_nearest_ratio(width: int, height: int, ratio: str) -> None:
    assert nearest_ratio(width, height) == ratio


def test_every_standard_ratio_is_its_own_nearest() -> None:
    for ratio in STANDARD_RATIOS:
        w, h = (int(x) for x in ratio.split(":"))
        assert nearest_ratio(w * 100, h * 100) == ratio


def test_size_for_ratio() -> None:
    assert size_for_ratio((1, 1)) == (1024, 1024)
    assert size_for_ratio((16, 9)) == (1344, 768)
    assert size_for_ratio((9, 16)) == (768, 1344)
    w, h = size_for_ratio((3, 2), area=512 * 512, multiple=8)
    assert (w % 8, h % 8) == (0, 0)
    assert w / h == pytest.approx(1.5, rel=0.02)


def test_size_context() -> None:
    assert Size(1536, 1024).as_context() == {
        "width": 1536,
        "height": 1024,
        "text": "1536x1024",
        "aspect": "3:2",
    }


# --- fitting a request to what a model accepts -------------------------------------------

OPENAI = SizeRule(choices=((1024, 1024), (1536, 1024), (1024, 1536)))


@pytest.mark.parametrize(
    ("requested", "fitted"),
    [
        ((1024, 1024), (1024, 1024)),
        ((1536, 1024), (1536, 1024)),
        ((512, 512), (1024, 1024)),  # same ratio, only one square choice
        ((1920, 1080), (1536, 1024)),  # 16:9 is nearest to 3:2
        ((1080, 1920), (1024, 1536)),
        ((1100, 1000), (1024, 1024)),  # slightly wide is still nearest to square
        ((4000, 1000), (1536, 1024)),
    ],
)
def test_fit_choices_by_ratio(requested: tuple[int, int], fitted: tuple[int, int]) -> None:
    assert fit_size(requested, OPENAI) == fitted


@pytest.mark.parametrize(
    ("requested", "fitted"),
    [
        ((600, 600), (512, 512)),
        ((300, 300), (256, 256)),
        ((100, 100), (256, 256)),
        ((800, 800), (1024, 1024)),  # log-area: 800² is nearer 1024² than 512²
        ((4096, 4096), (1024, 1024)),
    ],
)
def test_fit_choices_equal_ratio_then_area(
    requested: tuple[int, int], fitted: tuple[int, int]
) -> None:
    rule = SizeRule(choices=((256, 256), (512, 512), (1024, 1024)))
    assert fit_size(requested, rule) == fitted


def test_fit_choices_ratio_beats_area() -> None:
    rule = SizeRule(choices=((2048, 2048), (512, 256)))
    assert fit_size((1024, 1024), rule) == (2048, 2048)
    assert fit_size((4096, 2048), rule) == (512, 256)


def test_fit_choices_first_wins_on_a_tie() -> None:
    rule = SizeRule(choices=((1024, 768), (768, 1024)))
    assert fit_size((1000, 1000), rule) == (1024, 768)


@pytest.mark.parametrize(
    ("rule", "fitted"),
    [
        (SizeRule(), (1024, 1024)),
        (SizeRule(default=(512, 768)), (512, 768)),
        (SizeRule(choices=((256, 256), (1024, 1536)), default=(1024, 1536)), (1024, 1536)),
        (SizeRule(min=(64, 64), max=(512, 512), multiple_of=8), (512, 512)),
    ],
)
def test_fit_default_when_nothing_requested(rule: SizeRule, fitted: tuple[int, int]) -> None:
    assert fit_size(None, rule) == fitted


RANGE = SizeRule(min=(64, 64), max=(2048, 2048), multiple_of=8)
AREA = SizeRule(min=(512, 512), max=(2048, 2048), multiple_of=16, max_pixels=2**21)


@pytest.mark.parametrize(
    ("rule", "requested", "fitted"),
    [
        (RANGE, (1024, 768), (1024, 768)),
        (RANGE, (4096, 2048), (2048, 1024)),  # scaled down, ratio kept
        (RANGE, (10, 20), (64, 128)),  # scaled up, ratio kept
        (RANGE, (1001, 999), (1000, 1000)),  # rounded to multiples of 8
        (RANGE, (1023, 1023), (1024, 1024)),
        (SizeRule(min=(256, 256), max=(1536, 1536), multiple_of=32), (1000, 1000), (992, 992)),
        # max not itself a multiple: rounding up must not cross it
        (SizeRule(max=(1000, 1000), multiple_of=64), (2000, 2000), (960, 960)),
        (SizeRule(max=(1000, 1000), multiple_of=64), (1000, 500), (960, 512)),
        (SizeRule(min=(64, 64), max=(2048, 2048)), (1001, 999), (1001, 999)),  # multiple_of 1
        (SizeRule(min=(64, 64), max=(2048, 2048)), (4096, 64), (2048, 64)),  # extreme ratio
        # an area cap: scaled down, ratio kept, rounded down so the product stays under it
        (AREA, (2048, 2048), (1440, 1440)),
        (AREA, (2048, 1024), (2048, 1024)),  # exactly 2^21: allowed
        (AREA, (2048, 1536), (1664, 1248)),
        (AREA, (1792, 1024), (1792, 1024)),  # under the cap: unchanged
        (SizeRule(max_pixels=1_000_000), (2000, 1000), (1414, 707)),
    ],
)
def test_fit_range(rule: SizeRule, requested: tuple[int, int], fitted: tuple[int, int]) -> None:
    result = fit_size(requested, rule)
    assert result == fitted
    assert all(isinstance(v, int) for v in result)
    if rule.multiple_of > 1:
        assert result[0] % rule.multiple_of == 0 and result[1] % rule.multiple_of == 0
    if rule.max_pixels is not None:
        assert result[0] * result[1] <= rule.max_pixels


def test_max_pixels_is_read_from_the_provider_file() -> None:
    rule = _model_sizes({"sizes": {"max": "2048x2048", "multiple_of": 16, "max_pixels": 2097152}})
    assert rule.max_pixels == 2097152 and fit_size((2048, 2048), rule) == (1440, 1440)


# --- how provider files declare sizes ----------------------------------------------------


def _model_sizes(model: dict[str, object]) -> SizeRule:
    doc = {
        "id": "p",
        "base_url": "https://p.test",
        "models": {"m": model},
        "tasks": {"generate": {"steps": [{"name": "s", "request": {"path": "/"}}]}},
    }
    reports: list[tuple[object, ...]] = []
    spec = compile_provider(doc, "p.yaml", lambda *a: reports.append(a))
    assert spec is not None, reports
    return spec.models["m"].sizes


def test_declared_choices_default_to_1024_square_when_listed() -> None:
    rule = _model_sizes({"sizes": ["512x512", "1024x1024", "1536x1024"]})
    assert rule.choices == ((512, 512), (1024, 1024), (1536, 1024))
    assert rule.default == (1024, 1024)


def test_declared_choices_default_to_the_first_otherwise() -> None:
    rule = _model_sizes({"sizes": ["1328x1328", "1664x928"]})
    assert rule.default == (1328, 1328)
    assert fit_size(None, rule) == (1328, 1328)


def test_declared_default_size_and_range() -> None:
    rule = _model_sizes(
        {"sizes": {"min": "64x64", "max": "2048x2048", "multiple_of": 8}, "default_size": "768x512"}
    )
    assert rule == SizeRule(min=(64, 64), max=(2048, 2048), multiple_of=8, default=(768, 512))
    assert fit_size(None, rule) == (768, 512)


def test_fitted_sizes_are_kept_per_rule_and_bounded() -> None:
    from engine.dsl.sizes import FITS_KEPT, Size, fitted

    rule = SizeRule(multiple_of=8)
    first = fitted((100, 100), rule)
    assert first == Size(96, 96) and fitted((100, 100), rule) is first  # made once
    assert fitted(None, rule) == Size(1024, 1024)
    for side in range(FITS_KEPT + 10):  # many odd sizes: the table stays bounded
        assert fitted((64 + side, 64), rule) == Size(*fit_size((64 + side, 64), rule))
    assert len(rule.fits) <= FITS_KEPT
    assert rule == SizeRule(multiple_of=8) and hash(rule) == hash(SizeRule(multiple_of=8))
