"""docs/reference.md is generated from the JSON Schemas; it must match them."""

from __future__ import annotations

from engine.tools.schemadoc import COMMAND, generate

from .helpers import REPO

PAGE = REPO / "docs" / "reference.md"


def test_reference_page_is_up_to_date() -> None:
    current = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else ""
    assert current == generate(REPO / "schemas"), (
        f"docs/reference.md is out of date with schemas/*.schema.json; run: {COMMAND}"
    )


def test_every_schema_property_is_documented() -> None:
    page = generate(REPO / "schemas")
    names = ["base_url", "key_pattern", "images_per_call", "done_event", "rehost_urls"]
    names += ["failover_on", "keys_file", "circuit_breaker", "unordered", "size_min"]
    for name in names:
        assert f"| `{name}` |" in page, name
    assert "#### `duration`" in page and "#### `template`" in page
    assert "Same shape as [`tasks.generate`](#provider-tasks-generate)." in page
