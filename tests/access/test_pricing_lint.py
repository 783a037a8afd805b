"""Lint warns (W407) about a usable routed model that has no price anywhere."""

from __future__ import annotations

from pathlib import Path

import yaml

from engine.config.loader import build_snapshot
from engine.pricing import Price, compile_price
from tests.e2e.providers import config_dir, single


def w407(root: Path) -> list[str]:
    return [d.format() for d in build_snapshot(root, {}).diagnostics.sorted() if d.code == "W407"]


def unpriced_demo(tmp: Path, **route: object) -> Path:
    root = config_dir(tmp, ["demo"], single("demo", "demo-v1", **route))
    file = root / "providers.d" / "demo.yaml"
    file.write_text(file.read_text().replace("pricing: {per_image: 0}", ""))
    return root


def test_a_routed_model_without_a_price_is_w407(tmp_path: Path) -> None:
    routes = {
        "routes": {
            "m": {"targets": [{"provider": "demo", "model": "demo-v1"}]},
            "priced": {
                "pricing": {"per_image": 0.01},
                "targets": [{"provider": "demo", "model": "demo-v1"}],
            },
        }
    }
    root = unpriced_demo(tmp_path)
    (root / "routes.yaml").write_text(yaml.safe_dump({"demo": False, **routes}))
    (line,) = w407(root)
    assert "routes.m.targets[0].model" in line and "'demo/demo-v1' has no price" in line


def test_a_config_that_prices_nothing_is_not_nagged(tmp_path: Path) -> None:
    assert w407(unpriced_demo(tmp_path)) == []


def test_the_file_price_silences_it(tmp_path: Path) -> None:
    assert w407(config_dir(tmp_path, ["demo"], single("demo", "demo-v1"))) == []


def test_most_specific_per_image_key_wins() -> None:
    price = compile_price({"per_image": {"default": 1, "hd": 2, "512x512": 3, "hd/512x512": 4}})
    assert isinstance(price, Price)
    assert price.image((512, 512), "hd", None) == 4
    assert price.image((512, 512), None, None) == 3
    assert price.image((256, 256), "hd", None) == 2
    assert price.image((256, 256), "standard", None) == 1


def test_forms_add_up_and_steps_default() -> None:
    price = compile_price({"per_image": 0.01, "per_megapixel": 0.02, "per_step": 0.001, "steps": 4})
    assert price is not None
    assert round(price.image((1000, 1000), None, None), 9) == 0.034
    assert round(price.image((1000, 1000), None, 10), 9) == 0.04
