"""A serving process freezes its start-up objects and collects young garbage less often."""

from __future__ import annotations

import gc

from engine.gctune import GEN0_THRESHOLD, tune


def test_tune_freezes_what_exists_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    kept = [{"config": i} for i in range(100)]
    try:
        tune()
        assert gc.get_freeze_count() >= len(kept)
        assert gc.get_threshold() == (GEN0_THRESHOLD, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
