"""A provider's input image rules (`inputs:` in its file), applied with Pillow.

Once per request and provider, before any call is rendered: convert the format, scale down to
`max_side`, re-encode under `max_bytes`, and turn the client's mask (OpenAI's convention:
transparent = edit here) into the provider's. An image that already fits is passed on byte for
byte. CPU-bound: the service runs `transform_job` in a worker thread. Its callers import this
module when a job has input images to convert, so a gateway loads Pillow only then.
"""

from __future__ import annotations

import dataclasses
import io

from ...dsl.spec import InputsSpec
from ...pillow import Image, ImageOps
from ..job import ImageJob, InputImage
from ..routing.failures import UpstreamFailure

_PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_LOSSY_QUALITIES = (90, 80, 70, 60, 50)
_SHRINK = 0.8  # each further step down when an image is still over max_bytes
_MAX_SHRINKS = 12


def transform_job(job: ImageJob, spec: InputsSpec) -> ImageJob:
    """The job with its images and mask following `spec` (the same job when nothing changes).
    A mask keeps its image's size: it is scaled exactly like the first image."""
    if not job.images and job.mask is None:
        return job
    images = [transform_image(image, spec, "image") for image in job.images]
    mask = job.mask
    if mask is not None:
        size = _size_of(images[0]) if images else None
        mask = transform_mask(mask, spec, size)
    if all(a is b for a, b in zip(images, job.images, strict=True)) and mask is job.mask:
        return job
    return dataclasses.replace(job, images=images, mask=mask)


def transform_image(image: InputImage, spec: InputsSpec, what: str) -> InputImage:
    fmt = spec.format or _format_of(image.mime)
    with _open(image, what) as pic:
        too_big = spec.max_side is not None and max(pic.size) > spec.max_side
        too_heavy = spec.max_bytes is not None and len(image.data) > spec.max_bytes
        if image.mime == _MIME[fmt] and not too_big and not too_heavy:
            return image
        fits = not too_big and not too_heavy
        if spec.format is None and image.mime not in _MIME.values() and fits:
            return image  # a GIF (say) that fits: left as the client sent it
        pic = ImageOps.exif_transpose(pic)
        pic = _fit(pic, spec.max_side, Image.Resampling.LANCZOS)
        data = _encode_within(pic, fmt, spec.max_bytes, what)
    return InputImage(data=data, mime=_MIME[fmt])


def transform_mask(mask: InputImage, spec: InputsSpec, size: tuple[int, int] | None) -> InputImage:
    """The mask in `spec.mask`'s convention, scaled to `size` (the image's) or `max_side`."""
    with _open(mask, "mask") as pic:
        same = size is None or pic.size == size
        if spec.mask is None and same and (spec.max_side is None or max(pic.size) <= spec.max_side):
            return mask
        edit = _edit_region(pic)  # "L": 255 where the provider may paint
    if size is not None:
        edit = edit.resize(size, Image.Resampling.NEAREST) if edit.size != size else edit
    else:
        edit = _fit(edit, spec.max_side, Image.Resampling.NEAREST)
    convention = spec.mask or "alpha"
    if convention == "white_edit":
        out = edit
    elif convention == "black_edit":
        out = ImageOps.invert(edit)
    else:  # alpha: opaque black where the image is kept, transparent where it is edited
        out = Image.new("RGBA", edit.size, (0, 0, 0, 255))
        out.putalpha(ImageOps.invert(edit))
    buffer = io.BytesIO()
    out.save(buffer, "PNG")  # masks stay lossless whatever `format` says
    return InputImage(data=buffer.getvalue(), mime="image/png")


def _edit_region(pic: Image.Image) -> Image.Image:
    """255 where the client's mask says "edit": transparent pixels of a mask with alpha
    (OpenAI's convention), else white pixels of a black-and-white mask."""
    if pic.mode == "P" and "transparency" in pic.info:
        pic = pic.convert("RGBA")
    if pic.mode in ("RGBA", "LA", "PA"):
        alpha = pic.getchannel("A")
        return alpha.point(lambda a: 255 if a < 128 else 0)
    return pic.convert("L").point(lambda v: 255 if v >= 128 else 0)


def _fit(pic: Image.Image, max_side: int | None, resample: Image.Resampling) -> Image.Image:
    if max_side is None or max(pic.size) <= max_side:
        return pic
    scale = max_side / max(pic.size)
    size = (max(1, round(pic.width * scale)), max(1, round(pic.height * scale)))
    return pic.resize(size, resample)


def _encode_within(pic: Image.Image, fmt: str, max_bytes: int | None, what: str) -> bytes:
    """Encode; over `max_bytes`, lower the quality (JPEG, WebP), then the size, step by step."""
    pic = _mode_for(pic, fmt)
    qualities = _LOSSY_QUALITIES if fmt != "png" else (None,)
    for _ in range(_MAX_SHRINKS):
        for quality in qualities:
            data = _encode(pic, fmt, quality)
            if max_bytes is None or len(data) <= max_bytes:
                return data
        size = (max(1, int(pic.width * _SHRINK)), max(1, int(pic.height * _SHRINK)))
        pic = pic.resize(size, Image.Resampling.LANCZOS)
    raise UpstreamFailure(
        "bad_request", f"the {what} cannot be made smaller than this provider's {max_bytes} bytes"
    )


def _encode(pic: Image.Image, fmt: str, quality: int | None) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": quality} if quality is not None else {}
    pic.save(buffer, _PIL_FORMAT[fmt], **options)
    return buffer.getvalue()


def _mode_for(pic: Image.Image, fmt: str) -> Image.Image:
    """JPEG has no alpha: flatten onto white. Palette and odd modes become RGB(A)."""
    alpha = pic.mode in ("RGBA", "LA", "PA") or (pic.mode == "P" and "transparency" in pic.info)
    if fmt == "jpeg":
        if alpha:
            rgba = pic.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return pic if pic.mode in ("RGB", "L") else pic.convert("RGB")
    if pic.mode in ("RGB", "RGBA", "L", "LA") and not (fmt == "webp" and pic.mode in ("L", "LA")):
        return pic
    return pic.convert("RGBA" if alpha else "RGB")


def _open(image: InputImage, what: str) -> Image.Image:
    try:
        pic = Image.open(io.BytesIO(image.data))
        pic.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UpstreamFailure("bad_request", f"the {what} cannot be decoded: {exc}") from None
    return pic


def _size_of(image: InputImage) -> tuple[int, int]:
    with _open(image, "image") as pic:
        return pic.size


def _format_of(mime: str) -> str:
    return {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}.get(mime, "png")
