"""Input image rules (`inputs:`), applied with Pillow (engine/runtime/images/transforms.py)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from engine.dsl.spec import InputsSpec
from engine.runtime.images.transforms import transform_image, transform_job, transform_mask
from engine.runtime.job import ImageJob, InputImage
from engine.runtime.routing.failures import UpstreamFailure


def encode(pic: Image.Image, fmt: str = "PNG", **options: object) -> InputImage:
    buffer = io.BytesIO()
    pic.save(buffer, fmt, **options)
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
    return InputImage(buffer.getvalue(), mime[fmt])


def decode(image: InputImage) -> Image.Image:
    return Image.open(io.BytesIO(image.data))


def openai_mask(size: tuple[int, int], hole: tuple[int, int, int, int]) -> InputImage:
    """OpenAI's convention: opaque everywhere, transparent where the image is to be edited."""
    pic = Image.new("RGBA", size, (10, 20, 30, 255))
    pic.paste((0, 0, 0, 0), hole)
    return encode(pic)


def test_an_image_that_fits_is_passed_on_byte_for_byte() -> None:
    image = encode(Image.new("RGB", (64, 32), (200, 10, 10)))
    spec = InputsSpec(format="png", max_side=64, max_bytes=1_000_000)
    assert transform_image(image, spec, "image") is image
    job = ImageJob(task="edit", prompt="p", images=[image])
    assert transform_job(job, spec) is job


def test_format_and_max_side_keep_the_ratio() -> None:
    image = encode(Image.new("RGBA", (400, 200), (200, 10, 10, 128)))
    out = transform_image(image, InputsSpec(format="jpeg", max_side=100), "image")
    assert out.mime == "image/jpeg"
    pic = decode(out)
    assert (pic.format, pic.size, pic.mode) == ("JPEG", (100, 50), "RGB")


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png"])
def test_max_bytes_lowers_quality_then_size(fmt: str) -> None:
    noise = Image.effect_noise((512, 512), 90).convert("RGB")
    image = encode(noise)
    assert len(image.data) > 60_000
    out = transform_image(image, InputsSpec(format=fmt, max_bytes=60_000), "image")
    assert len(out.data) <= 60_000
    assert decode(out).format == fmt.upper()


def test_an_image_that_cannot_get_small_enough_is_a_bad_request() -> None:
    noise = encode(Image.effect_noise((256, 256), 90).convert("RGB"))
    with pytest.raises(UpstreamFailure) as info:
        transform_image(noise, InputsSpec(max_bytes=10), "image")
    assert info.value.kind == "bad_request"


@pytest.mark.parametrize(
    ("convention", "edit_value", "keep_value"),
    [("white_edit", 255, 0), ("black_edit", 0, 255)],
)
def test_openai_mask_to_black_and_white(convention: str, edit_value: int, keep_value: int) -> None:
    mask = openai_mask((40, 20), (0, 0, 10, 20))  # left quarter: edit here
    out = decode(transform_mask(mask, InputsSpec(mask=convention), None))
    assert (out.mode, out.size) == ("L", (40, 20))
    assert out.getpixel((2, 10)) == edit_value and out.getpixel((30, 10)) == keep_value


def test_a_black_and_white_mask_becomes_openais_alpha_mask() -> None:
    pic = Image.new("L", (40, 20), 0)
    pic.paste(255, (0, 0, 10, 20))  # white = edit
    out = decode(transform_mask(encode(pic), InputsSpec(mask="alpha"), None))
    assert out.mode == "RGBA"
    assert out.getpixel((2, 10))[3] == 0 and out.getpixel((30, 10))[3] == 255


def test_the_mask_follows_its_image_size() -> None:
    image = encode(Image.new("RGB", (400, 200), "white"))
    mask = openai_mask((400, 200), (0, 0, 100, 200))
    job = ImageJob(task="edit", prompt="p", images=[image], mask=mask)
    out = transform_job(job, InputsSpec(max_side=100, mask="white_edit"))
    assert decode(out.images[0]).size == (100, 50)
    pic = decode(out.mask) if out.mask else None
    assert pic is not None and pic.size == (100, 50)
    assert pic.getpixel((5, 25)) == 255 and pic.getpixel((80, 25)) == 0


def test_a_gif_is_converted_only_when_asked_or_needed() -> None:
    gif = encode(Image.new("P", (32, 32)), "GIF")
    assert transform_image(gif, InputsSpec(max_side=64), "image") is gif
    out = transform_image(gif, InputsSpec(format="png"), "image")
    assert decode(out).format == "PNG"


def test_an_undecodable_image_is_a_bad_request() -> None:
    broken = InputImage(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image/png")
    with pytest.raises(UpstreamFailure) as info:
        transform_image(broken, InputsSpec(format="jpeg"), "image")
    assert info.value.kind == "bad_request"


STEP = {"name": "a", "request": {"path": "/a"}}


@pytest.mark.parametrize(
    ("max_bytes", "expected"),
    [(4096, 4096), ("500KB", 500 * 1024), ("4MB", 4 * 1024 * 1024), ("1.5 MB", 1572864)],
)
def test_inputs_compile_with_byte_sizes(max_bytes: object, expected: int) -> None:
    from engine.dsl.provider import compile_provider

    doc = {"id": "t", "base_url": "https://t.test", "auth": {"required": False},
           "inputs": {"format": "webp", "max_side": 2048, "max_bytes": max_bytes,
                      "mask": "black_edit"},
           "models": {"m": None},
           "tasks": {"generate": {"steps": [STEP]}}}  # fmt: skip
    spec = compile_provider(doc, "t.yaml", lambda *a: None)
    assert spec is not None
    assert spec.inputs == InputsSpec("webp", 2048, expected, "black_edit")


def test_a_bad_byte_size_is_a_schema_error(tmp_path: object) -> None:
    from pathlib import Path

    from engine.config.loader import build_snapshot

    root = Path(str(tmp_path))
    (root / "providers.d").mkdir()
    (root / "providers.d" / "t.yaml").write_text(
        "id: t\nbase_url: https://t.test\nauth: {required: false}\n"
        "inputs: {max_bytes: 4 gigs}\nmodels: {m: {}}\n"
        "tasks: {generate: {steps: [{name: a, request: {path: /a}}]}}\n"
    )
    (root / "routes.yaml").write_text("routes: {r: {targets: [{provider: t, model: m}]}}\n")
    result = build_snapshot(root, {})
    lines = [d.format() for d in result.diagnostics.errors]
    assert any(line.startswith("providers.d/t.yaml:4:") and "E101 inputs.max_bytes" in line
               for line in lines), lines  # fmt: skip
