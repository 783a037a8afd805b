"""Target ordering: weighted, priority, round-robin, weight 0, fallbacks, direct names."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from engine.config.loader import ConfigSnapshot, build_snapshot
from engine.runtime.routing.router import Router, UnknownModel
from tests.e2e.providers import config_dir

ENV = {"OPENAI_API_KEYS": "k1", "SILICONFLOW_API_KEYS": "k2", "MODELSCOPE_API_KEYS": "k3"}


def snapshot(
    tmp_path: Path, routes: dict[str, object], env: dict[str, str] = ENV
) -> ConfigSnapshot:
    root = config_dir(tmp_path, ["openai", "siliconflow", "modelscope", "demo"], routes)
    result = build_snapshot(root, env)
    assert result.snapshot is not None, [d.format() for d in result.diagnostics.items]
    return result.snapshot


def targets(*specs: tuple[str, str, float, int]) -> list[dict[str, object]]:
    return [{"provider": p, "model": m, "weight": w, "priority": pr} for p, m, w, pr in specs]


OPENAI = ("openai", "gpt-image-1")
SF = ("siliconflow", "Kwai-Kolors/Kolors")
MS = ("modelscope", "Qwen/Qwen-Image")


def test_weighted_first_choice_follows_the_weights(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path,
        {
            "routes": {
                "r": {
                    "strategy": "weighted",
                    "targets": targets((*OPENAI, 3, 0), (*SF, 1, 0), (*MS, 0, 0)),
                }
            }
        },
    )
    router = Router(random.Random(1234))
    draws = 20000
    firsts = Counter(
        router.plan(snap, "r", "generate").attempts[0].provider.id for _ in range(draws)
    )
    assert firsts["modelscope"] == 0  # weight 0 is disabled, never chosen
    assert abs(firsts["openai"] / draws - 0.75) < 0.02  # seeded: tolerance 2 points
    plan = router.plan(snap, "r", "generate")
    assert [s.reason for s in plan.skipped] == ["weight 0 (disabled)"]


def test_priority_cascades_highest_first(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path, {"routes": {"r": {"targets": targets((*MS, 1, 0), (*OPENAI, 1, 5), (*SF, 1, 2))}}}
    )
    router = Router(random.Random(7))
    for _ in range(50):
        order = [a.provider.id for a in router.plan(snap, "r", "generate").attempts]
        assert order == ["openai", "siliconflow", "modelscope"]


def test_equal_priorities_are_shuffled_by_weight(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path, {"routes": {"r": {"targets": targets((*OPENAI, 1, 1), (*SF, 1, 1), (*MS, 1, 0))}}}
    )
    router = Router(random.Random(3))
    firsts = Counter(
        router.plan(snap, "r", "generate").attempts[0].provider.id for _ in range(2000)
    )
    assert set(firsts) == {"openai", "siliconflow"}
    assert 0.4 < firsts["openai"] / 2000 < 0.6
    assert all(
        router.plan(snap, "r", "generate").attempts[2].provider.id == "modelscope"
        for _ in range(20)
    )


def test_round_robin_is_fair(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path,
        {
            "routes": {
                "r": {
                    "strategy": "round_robin",
                    "targets": targets((*OPENAI, 1, 0), (*SF, 1, 0), (*MS, 1, 0)),
                }
            }
        },
    )
    router = Router()
    firsts = Counter(router.plan(snap, "r", "generate").attempts[0].provider.id for _ in range(300))
    assert set(firsts.values()) == {100}


def test_fallback_routes_come_after_all_targets(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path,
        {
            "routes": {
                "main": {"targets": targets((*OPENAI, 1, 0)), "fallbacks": ["backup"]},
                "backup": {
                    "targets": targets((*SF, 1, 0)),
                    "fallbacks": ["main"],
                },  # cycles are cut
            }
        },
    )
    plan = Router().plan(snap, "main", "generate")
    assert [(a.route, a.provider.id) for a in plan.attempts] == [
        ("main", "openai"),
        ("backup", "siliconflow"),
    ]


def test_unsupported_task_and_missing_keys_are_skipped(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path,
        {"routes": {"r": {"targets": targets((*OPENAI, 1, 1), (*SF, 1, 0))}}},
        env={"SILICONFLOW_API_KEYS": "k"},
    )
    plan = Router().plan(snap, "r", "generate")
    assert [a.provider.id for a in plan.attempts] == ["siliconflow"]
    assert [s.reason for s in plan.skipped] == ["no keys configured"]
    edit = Router().plan(snap, "r", "edit")
    assert not edit.attempts and all(
        "does not support edit" in s.reason
        for s in edit.skipped
        if s.target.provider == "siliconflow"
    )


def test_aliases_defaults_and_direct_names(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path,
        {
            "routes": {"r": {"targets": targets((*OPENAI, 1, 0))}},
            "aliases": {"dall-e-3": "r"},
            "defaults": {"generate": "r"},
        },
    )
    router = Router()
    assert router.plan(snap, "dall-e-3", "generate").route.name == "r"
    assert router.plan(snap, None, "generate").route.name == "r"
    assert router.plan(snap, "auto", "generate").route.name == "r"
    direct = router.plan(snap, "siliconflow/Kwai-Kolors/Kolors", "generate")
    assert [(a.provider.id, a.model.name) for a in direct.attempts] == [SF]
    with pytest.raises(UnknownModel):
        router.plan(snap, "siliconflow/not-a-model", "generate")


def test_direct_names_can_be_turned_off(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path, {"routes": {"r": {"targets": targets((*OPENAI, 1, 0))}}, "direct_models": False}
    )
    with pytest.raises(UnknownModel):
        Router().plan(snap, "openai/gpt-image-1", "generate")


def test_relay_keeps_only_the_key_owners_targets(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path, {"routes": {"r": {"targets": targets((*OPENAI, 1, 1), (*MS, 1, 0))}}}, env={}
    )
    plan = Router().plan(snap, "r", "generate", relay="modelscope")
    # modelscope has no pool keys, but in relay mode the client brought one
    assert [a.provider.id for a in plan.attempts] == ["modelscope"]


def test_a_reload_is_never_planned_with_the_last_snapshots_verdicts(tmp_path: Path) -> None:
    """The router keeps each snapshot's target verdicts: a new snapshot (a reload) gets its
    own, and requests still on the old one keep theirs, whatever order they come in."""
    routes = {"routes": {"r": {"targets": targets((*OPENAI, 1, 1), (*SF, 1, 0))}}}
    keyed = snapshot(tmp_path / "a", routes)
    keyless = snapshot(tmp_path / "b", routes, env={"SILICONFLOW_API_KEYS": "k"})
    router = Router()
    for _ in range(2):
        assert [a.provider.id for a in router.plan(keyed, "r", "generate").attempts] == [
            "openai",
            "siliconflow",
        ]
        reloaded = router.plan(keyless, "r", "generate")
        assert [a.provider.id for a in reloaded.attempts] == ["siliconflow"]
        assert [s.reason for s in reloaded.skipped] == ["no keys configured"]
    # per task and per relay too: one snapshot, different answers
    assert router.plan(keyed, "r", "edit").attempts[0].provider.id == "openai"
    assert [a.provider.id for a in router.plan(keyed, "r", "generate", "siliconflow").attempts] == [
        "siliconflow"
    ]
    assert len(router.plan(keyed, "r", "generate").attempts) == 2


def test_a_plan_with_one_order_is_made_once_per_snapshot(tmp_path: Path) -> None:
    """Priority tiers of one target each (or a single target) leave nothing to draw: the
    same plan serves every request until a reload; a drawn order is drawn per request."""
    routes = {
        "routes": {
            "fixed": {"targets": targets((*OPENAI, 1, 2), (*SF, 1, 1))},
            "drawn": {"strategy": "weighted", "targets": targets((*OPENAI, 1, 0), (*SF, 1, 0))},
        }
    }
    snap = snapshot(tmp_path / "a", routes)
    router = Router(random.Random(7))
    fixed = router.plan(snap, "fixed", "generate")
    assert [a.provider.id for a in fixed.attempts] == ["openai", "siliconflow"]
    assert router.plan(snap, "fixed", "generate") is fixed
    drawn = {router.plan(snap, "drawn", "generate").attempts[0].provider.id for _ in range(50)}
    assert drawn == {"openai", "siliconflow"}
    reloaded = snapshot(tmp_path / "b", routes)
    assert router.plan(reloaded, "fixed", "generate") is not fixed


def test_a_plan_knows_what_every_attempt_takes(tmp_path: Path) -> None:
    """The n, input-image count and polling a plan's attempts share are found once on the
    (shared, frozen) plan; servable() hands back the plan's own attempts when every one takes
    the request, and filters them as before otherwise."""
    from engine.runtime.job import ImageJob
    from engine.runtime.routing.verdicts import servable

    snap = snapshot(
        tmp_path, {"routes": {"r": {"targets": targets((*OPENAI, 1, 2), (*SF, 1, 1), (*MS, 1, 0))}}}
    )
    plan = Router(random.Random(1)).plan(snap, "r", "generate")
    models = [a.model for a in plan.attempts]
    assert plan.max_n == min(m.max_n for m in models)
    assert plan.max_images == min(m.max_images for m in models)
    assert plan.polls == any(a.provider.tasks[a.task].polls for a in plan.attempts)
    assert servable(ImageJob("generate", "p", n=plan.max_n), plan) is plan.attempts
    for n in sorted({m.max_n + 1 for m in models}):
        job = ImageJob("generate", "p", n=n)
        assert list(servable(job, plan)) == [a for a in plan.attempts if n <= a.model.max_n]
    assert list(servable(ImageJob("generate", "p"), plan, images=99)) == [
        a for a in plan.attempts if a.model.max_images >= 99
    ]


def test_a_fixed_plan_is_found_by_model_name_within_its_snapshot_only(tmp_path: Path) -> None:
    """Fixed plans are kept by the client's model name per snapshot: a reload (a new
    snapshot) plans afresh, and an unknown name is never kept."""
    one = snapshot(tmp_path / "one", {"routes": {"r": {"targets": targets((*OPENAI, 1, 0))}}})
    two = snapshot(tmp_path / "two", {"routes": {"r": {"targets": targets((*SF, 1, 0))}}})
    router = Router(random.Random(5))
    first = router.plan(one, "r", "generate")
    assert router.plan(one, "r", "generate") is first  # kept
    assert [a.provider.id for a in first.attempts] == ["openai"]
    assert [a.provider.id for a in router.plan(two, "r", "generate").attempts] == ["siliconflow"]
    assert [a.provider.id for a in router.plan(one, "r", "generate").attempts] == ["openai"]
    for _ in range(2):
        with pytest.raises(UnknownModel):
            router.plan(one, "nope", "generate")


def test_an_attempt_carries_its_providers_policy(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path,
        {
            "providers": {"openai": {"max_concurrency_per_key": 3}},
            "routes": {"r": {"targets": targets((*OPENAI, 1, 1), (*SF, 1, 0))}},
        },
    )
    first, second = Router().plan(snap, "r", "generate").attempts
    assert first.policy is snap.routes.policy("openai")
    assert first.policy.max_concurrency_per_key == 3
    assert second.policy is snap.routes.policy("siliconflow")
