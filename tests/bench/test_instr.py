"""bench.instr's cache table: each system's callgrind events per request, and its own share
(its events minus `direct`'s, the client and upstream alone)."""

from __future__ import annotations

from bench.instr import cache_table


def test_the_cache_table_subtracts_the_client_and_upstream() -> None:
    counted = {
        "A": {"Ir": 1_800.0, "ILmr": 3.0, "DLmr": 20.0, "DLmw": 10.0},
        "floor": {"Ir": 1_200.0, "ILmr": 1.0, "DLmr": 10.0, "DLmw": 5.0},
        "direct": {"Ir": 600.0, "ILmr": 1.0, "DLmr": 5.0, "DLmw": 2.0},
    }
    lines = cache_table(counted).splitlines()
    heads = ["per", "request", "A", "floor", "direct", "A", "own", "floor", "own"]
    assert lines[0].split() == heads
    rows = {line[:28].strip(): line[28:].split() for line in lines[1:]}
    assert rows["instructions"] == ["1,800", "1,200", "600", "1,200", "600"]
    assert rows["L2 misses, instructions"] == ["3", "1", "1", "2", "0"]
    assert rows["L2 misses, data"] == ["30", "15", "7", "23", "8"]
    assert rows["I1 misses"] == ["0"] * 5  # an event not counted reads as none


def test_without_direct_there_is_no_own_share() -> None:
    lines = cache_table({"A": {"Ir": 10.0}, "B": {"Ir": 12.0}}).splitlines()
    assert lines[0].split() == ["per", "request", "A", "B"]
    assert lines[1].split() == ["instructions", "10", "12"]
