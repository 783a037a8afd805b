"""Image prices: a model's `pricing` (provider file, or a route's override) compiled once at
load, then asked per request for an estimate (before the call, for budgets) and the actual
cost (after it, from what came back and the upstream's usage tokens when it reports them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD. `per_image` keys: `default`, `WxH`, a quality, or `quality/WxH` (most specific
    wins). Token rates are USD per 1M tokens."""

    per_image: Mapping[str, float] = field(default_factory=dict)
    per_megapixel: float | None = None
    per_step: float | None = None
    steps: int | None = None  # steps assumed when the request names none
    text_input: float | None = None
    image_input: float | None = None
    output: float | None = None

    def image(self, size: tuple[int, int] | None, quality: str | None, steps: int | None) -> float:
        """The list price of one image of this size and quality."""
        cost = 0.0
        if self.per_image:
            text = f"{size[0]}x{size[1]}" if size else None
            for key in (f"{quality}/{text}", text, quality, "default"):
                if key and key in self.per_image:
                    cost += self.per_image[key]
                    break
        if self.per_megapixel is not None and size:
            cost += self.per_megapixel * size[0] * size[1] / MILLION
        if self.per_step is not None:
            cost += self.per_step * (steps or self.steps or 0)
        return cost

    @property
    def by_tokens(self) -> bool:
        return self.output is not None

    def tokens(self, usage: Any) -> float | None:
        """The cost of what the upstream reported as used (OpenAI's ImageGenUsage shape), or
        None without usable usage."""
        if not self.by_tokens or not isinstance(usage, dict):
            return None
        out = usage.get("output_tokens")
        if not isinstance(out, int):
            return None
        details = usage.get("input_tokens_details")
        inputs = usage.get("input_tokens")
        text, image = (inputs if isinstance(inputs, int) else 0), 0
        if isinstance(details, dict):
            text = int(details.get("text_tokens") or 0)
            image = int(details.get("image_tokens") or 0)
        rates = (self.text_input or 0, self.image_input or 0, self.output or 0)
        return (text * rates[0] + image * rates[1] + out * rates[2]) / MILLION


def compile_price(raw: Mapping[str, Any] | None) -> Price | None:
    if not raw:
        return None
    per_image = raw.get("per_image")
    if isinstance(per_image, (int, float)):
        per_image = {"default": float(per_image)}
    tokens = raw.get("tokens") or {}
    return Price(
        per_image={str(k): float(v) for k, v in (per_image or {}).items()},
        per_megapixel=_num(raw.get("per_megapixel")),
        per_step=_num(raw.get("per_step")),
        steps=int(raw["steps"]) if raw.get("steps") is not None else None,
        text_input=_num(tokens.get("text_input")),
        image_input=_num(tokens.get("image_input")),
        output=_num(tokens.get("output")),
    )


def _num(value: Any) -> float | None:
    return float(value) if value is not None else None


def job_steps(extra: Mapping[str, Any]) -> int | None:
    steps = extra.get("steps") or extra.get("num_inference_steps")
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def estimate(
    price: Price, n: int, size: tuple[int, int] | None, quality: str | None, steps: int | None
) -> float:
    """What n images will cost at list price, before the call."""
    return n * price.image(size, quality, steps)


def actual(
    price: Price,
    images: int,
    size: tuple[int, int] | None,
    quality: str | None,
    steps: int | None,
    usage: Any,
) -> float:
    """What the images returned cost: the upstream's token usage when priced by tokens and
    reported, otherwise the list price per image."""
    by_usage = price.tokens(usage)
    if by_usage is not None:
        return by_usage
    return images * price.image(size, quality, steps)


def usd(value: float) -> str:
    """The header's form: plain decimal, at most 6 places, no exponent."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"
