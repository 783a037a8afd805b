"""What `pixgate lint` says about routes.yaml and keys."""

from __future__ import annotations

from pathlib import Path

from engine.config.loader import build_snapshot
from tests.e2e.providers import config_dir

TARGET = [{"provider": "openai", "model": "gpt-image-1"}]


def lint(
    tmp_path: Path,
    routes: dict[str, object],
    env: dict[str, str] | None = None,
    providers: tuple[str, ...] = ("openai", "gitee", "doubao"),
) -> list[str]:
    result = build_snapshot(
        config_dir(tmp_path, list(providers), routes), {"OPENAI_API_KEYS": "k", **(env or {})}
    )
    return [f"{d.code} {d.path}: {d.message}" for d in result.diagnostics.sorted()]


def codes(lines: list[str]) -> list[str]:
    return [line.split()[0] for line in lines]


def test_alias_claiming_a_route_name_names_both_places(tmp_path: Path) -> None:
    lines = lint(tmp_path, {"routes": {"m": {"targets": TARGET}}, "aliases": {"m": "m"}})
    assert [ln for ln in lines if ln.startswith("E303")] == [
        "E303 aliases.m: 'm' is claimed by both routes.m and aliases.m; "
        "/v1/models would be ambiguous"
    ]


def test_route_shadowing_a_direct_name(tmp_path: Path) -> None:
    lines = lint(tmp_path, {"routes": {"openai/gpt-image-1": {"targets": TARGET}}})
    assert any(ln.startswith("E303 routes.openai/gpt-image-1") for ln in lines)
    off = lint(
        tmp_path, {"direct_models": False, "routes": {"openai/gpt-image-1": {"targets": TARGET}}}
    )
    assert "E303" not in codes(off)


def test_unknown_provider_and_model_in_targets(tmp_path: Path) -> None:
    lines = lint(
        tmp_path,
        {
            "routes": {
                "m": {
                    "targets": [
                        {"provider": "nope", "model": "x"},
                        {"provider": "openai", "model": "dall-e-9"},
                    ]
                }
            }
        },
    )
    assert any(
        ln.startswith("E301 routes.m.targets[0].provider: unknown provider 'nope'") for ln in lines
    )
    assert any(
        ln.startswith(
            "E302 routes.m.targets[1].model: provider 'openai' declares no model 'dall-e-9'"
        )
        for ln in lines
    )


def test_shipped_patterns_do_not_overlap_but_overlaps_are_reported(tmp_path: Path) -> None:
    assert "W404" not in codes(lint(tmp_path, {"routes": {"m": {"targets": TARGET}}}))
    extra = config_dir(tmp_path, ["openai", "gitee"], {"routes": {"m": {"targets": TARGET}}})
    clash = (extra / "providers.d" / "gitee.yaml").read_text().replace("id: gitee", "id: zz-clash")
    (extra / "providers.d" / "zz-clash.yaml").write_text(clash)
    result = build_snapshot(extra, {"OPENAI_API_KEYS": "k"})
    w404 = [d for d in result.diagnostics.items if d.code == "W404"]
    assert len(w404) == 1 and w404[0].file == "providers.d/zz-clash.yaml"
    assert "'gitee' wins" in w404[0].message
    assert result.snapshot is not None  # a warning, not an error


def test_gateway_key_that_looks_like_a_provider_key(tmp_path: Path) -> None:
    lines = lint(
        tmp_path,
        {"routes": {"m": {"targets": TARGET}}},
        env={"PIXGATE_API_KEYS": "plain-key,AbCdEf0123456789AbCdEf0123456789Ab"},
    )
    w403 = [ln for ln in lines if ln.startswith("W403")]
    assert len(w403) == 1 and "'gitee'" in w403[0]
    assert "AbCdEf0123456789" not in w403[0]  # never print the key itself


def test_unreadable_keys_file(tmp_path: Path) -> None:
    lines = lint(
        tmp_path,
        {
            "routes": {"m": {"targets": TARGET}},
            "providers": {"openai": {"keys_file": "/nonexistent/keys"}},
        },
    )
    assert any(ln.startswith("E105 providers.openai.keys_file: cannot read") for ln in lines)


def test_policy_for_an_unknown_provider(tmp_path: Path) -> None:
    lines = lint(tmp_path, {"routes": {"m": {"targets": TARGET}}, "providers": {"ghost": {}}})
    assert any(ln.startswith("E301 providers.ghost") for ln in lines)
