"""Usage rows (and the pixgate_client_* labels) carry only names from the config: a model, route
or provider a client made up is `other`, callers without a clients.yaml name are fixed names."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request

from engine.api.metering import row_of, who
from engine.config.loader import build_snapshot
from engine.runtime.job import ImageJob
from tests.gateway import REPO


def test_unknown_names_collapse_and_callers_without_a_name_are_fixed_names() -> None:
    snapshot = build_snapshot(REPO, {}).snapshot
    assert snapshot is not None
    anonymous = make_mocked_request("POST", "/v1/images/generations")
    keyed = make_mocked_request(
        "POST", "/v1/images/generations", headers={"Authorization": "Bearer some-key-123"}
    )
    relayed = make_mocked_request("POST", "/v1/images/generations")
    relay = ("openai", "sk-relayed")
    made_up = ImageJob(task="generate", prompt="x", model="made-up-model-" + "x" * 50)
    row = row_of(snapshot, made_up, who(anonymous, None, None), "ghost-provider", "ghost-model")
    assert (row.client, row.route, row.provider, row.model) == (
        "(anonymous)", "other", "other", "other"
    )  # fmt: skip
    demo = ImageJob(task="generate", prompt="x", model="demo")
    row = row_of(snapshot, demo, who(keyed, None, None), "demo", "any-id-a-relay-client-sent")
    assert (row.client, row.route, row.provider, row.model) == (
        "(api-keys)",
        "demo",
        "demo",
        "other",
    )
    assert "some-key" not in repr(row)
    row = row_of(snapshot, demo, who(relayed, None, relay), "demo", "demo-v1")
    assert (row.client, row.model) == ("(relay)", "demo-v1")
