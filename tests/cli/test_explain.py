"""`pixgate explain`: the dry run a reviewer reads to see what a config change does to a request.

Each test builds a config dir from shipped provider files (plus, where a shape is needed that no
shipped file has, a small handwritten one), sets the keys through os.environ (where explain reads
them, like serve), runs `engine.cli.main([...])` in-process and reads what it prints.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from engine.runtime.routing.keys import mask_key

from .helpers import run, shipped, use_env

OPENAI_KEY = "sk-proj-REALSECRETabcdefghijklmnop1234"
OPENAI_KEY_2 = "sk-proj-SECONDSECRETabcdefghijklmn5678"
MODELSCOPE_KEY = "ms-0123abcd-0000-1111-2222-333344445555"
ENV = {"OPENAI_API_KEYS": f"{OPENAI_KEY},{OPENAI_KEY_2}", "MODELSCOPE_API_KEYS": MODELSCOPE_KEY}
SECRETS = (OPENAI_KEY, OPENAI_KEY_2, MODELSCOPE_KEY)
PROMPT = "a lighthouse, at dusk"

ROUTES: dict[str, Any] = {
    "demo": False,
    "routes": {
        "multi": {
            "strategy": "priority",
            "targets": [
                {"provider": "openai", "model": "gpt-image-1", "priority": 3},
                {"provider": "openai", "model": "dall-e-3", "priority": 3},
                {"provider": "siliconflow", "model": "black-forest-labs/FLUX.1-schnell",
                 "priority": 2},
                {"provider": "huggingface-space", "model": "black-forest-labs/FLUX.1-schnell",
                 "priority": 2, "weight": 0},
                {"provider": "pollinations", "model": "flux", "priority": 1},
                {"provider": "modelscope", "model": "Qwen/Qwen-Image"},
            ],
            "fallbacks": ["offline"],
        },
        "offline": {"targets": [{"provider": "demo", "model": "demo-v1"}]},
    },
    "aliases": {"house": "multi"},
    "defaults": {"generate": "multi"},
}  # fmt: skip


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = shipped(
        tmp_path / "config",
        "openai",
        "siliconflow",
        "huggingface-space",
        "pollinations",
        "modelscope",
        "demo",
    )
    (root / "routes.yaml").write_text(yaml.safe_dump(ROUTES), encoding="utf-8")
    use_env(monkeypatch, ENV)
    return root


def explain(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str]:
    code, out, err = run(capsys, "explain", str(config), "--prompt", PROMPT, *args)
    for secret in SECRETS:
        assert secret not in out + err, "a real key appears in the output"
    return code, out


def section(text: str, start: str, end: str) -> str:
    """The lines after the line starting with `start`, up to the next line starting with `end`."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip().startswith(start))
    rest = lines[first + 1 :]
    last = next((i for i, line in enumerate(rest) if line.strip().startswith(end)), len(rest))
    return "\n".join(rest[:last])


def stripped(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_multi_target_route_order_reasons_and_first_request(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, out = explain(capsys, config, "--model", "multi", "--size", "1600x1000", "--n", "2")
    assert code == 0, out
    assert "route: multi ('multi' is a route in routes.yaml)" in out
    assert "strategy: priority, deadline 15m, fallbacks: offline" in out  # modelscope polls

    # Every target, in route order, in or out with the reason.
    targets = stripped(section(out, "targets:", "attempts, in order:"))
    assert targets == [
        "in  openai/gpt-image-1 (route multi, priority 3, weight 1): "
        "attempt 1 (2 keys, serves generate, n=2 within max_n 10)",
        "out openai/dall-e-3 (route multi, priority 3, weight 1): n=2 is above its max_n 1",
        "out siliconflow/black-forest-labs/FLUX.1-schnell (route multi, priority 2, weight 1): "
        "no keys configured (set SILICONFLOW_API_KEYS)",
        "out huggingface-space/black-forest-labs/FLUX.1-schnell (route multi, priority 2, "
        "weight 0): weight 0 (disabled)",
        "in  pollinations/flux (route multi, priority 1, weight 1): "
        "attempt 2 (needs no key, serves generate, n=2 within max_n 4)",
        "in  modelscope/Qwen/Qwen-Image (route multi, priority 0, weight 1): "
        "attempt 3 (1 key, serves generate, n=2 within max_n 4)",
        "out demo/demo-v1 (route offline, priority 0, weight 1): "
        "the built-in demo upstream is off (demo: false)",
    ]

    # The attempts in order, with provider, upstream model, strategy, priority, weight.
    attempts = re.findall(r"^  (\d)\. (\S+): model (\S+) \(route (\S+), strategy (\w+), "
                          r"priority (\d), weight (\d)\)$", out, re.M)  # fmt: skip
    assert attempts == [
        ("1", "openai", "gpt-image-1", "multi", "priority", "3", "1"),
        ("2", "pollinations", "flux", "multi", "priority", "1", "1"),
        ("3", "modelscope", "Qwen/Qwen-Image", "multi", "priority", "0", "1"),
    ]
    assert f"key: {mask_key(OPENAI_KEY)} (1 of 2, round_robin)" in out
    assert "key: none (this provider needs none and has none)" in out  # pollinations
    assert out.count("circuit: closed (fresh process)") == 3
    assert "a fresh process has every circuit closed" in out
    assert "size: 1600x1000 -> 1536x1024 (allowed: one of 1024x1024, 1536x1024, 1024x1536)" in out
    assert "size: 1600x1000 -> 1600x1000 (allowed: min 64x64, max 2048x2048)" in out

    # Only the first attempt is rendered (without --all), every header, the body as JSON.
    assert out.count("upstream requests of attempt") == 1
    request = section(out, "upstream requests of attempt 1 (openai, call 1)", "notes:")
    assert "POST https://api.openai.com/v1/images/generations" in request
    assert f"Authorization: Bearer {mask_key(OPENAI_KEY)}" in request
    assert "Content-Type: application/json" in request
    body = textwrap.dedent(section(request, "body:", "(timeout"))
    assert json.loads(body) == {"model": "gpt-image-1", "prompt": PROMPT, "n": 2,
                                "size": "1536x1024"}  # fmt: skip
    assert "(timeout 3m)" in request
    assert "-> images from `data[].b64_json || data[].url`" in request


def test_every_attempt_with_all_and_placeholders_for_later_steps(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, out = explain(capsys, config, "--model", "multi", "--size", "1600x1000", "--all")
    assert code == 0, out
    assert out.count("upstream requests of attempt") == 4  # n=1: dall-e-3 is in too
    assert "upstream requests of attempt 2 (openai, call 1)" in out

    pollinations = section(out, "upstream requests of attempt 3", "upstream requests of")
    assert (
        "GET https://gen.pollinations.ai/image/a%20lighthouse%2C%20at%20dusk?model=flux"
        "&width=1600&height=1000&seed=<random_seed>&nologo=true&private=true"
    ) in pollinations
    assert "Authorization" not in pollinations
    assert "note: <random_seed> is a fresh random 31-bit integer per call" in pollinations

    modelscope = section(out, "upstream requests of attempt 4", "notes:")
    submit = section(modelscope, "step submit:", "step poll:")
    assert "POST https://api-inference.modelscope.cn/v1/images/generations" in submit
    assert "X-ModelScope-Async-Mode: true" in submit
    assert f"Authorization: Bearer {mask_key(MODELSCOPE_KEY)}" in submit
    assert json.loads(textwrap.dedent(section(submit, "body:", "(timeout"))) == {
        "model": "Qwen/Qwen-Image",
        "prompt": PROMPT,
        "size": "1600x1000",
    }
    assert "-> extracts task_id = `task_id` (steps.submit.task_id)" in submit
    poll = section(modelscope, "step poll:", "notes:")
    assert "GET https://api-inference.modelscope.cn/v1/tasks/<steps.submit.task_id>" in poll
    assert (
        "-> polls until `task_status == 'SUCCEED'` every 3s (the first after 3s), for at most 10m"
    ) in poll
    assert (
        "note: depends on values an earlier step returns, unknown in a dry run: "
        "<steps.submit.task_id> (shown as placeholders)"
    ) in poll


def test_json_format(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out = explain(
        capsys, config, "--model", "house", "--size", "1600x1000", "--format", "json"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True and doc["exit_code"] == 0 and doc["problem"] is None
    assert doc["route"] == {
        "name": "multi",
        "resolved_by": "alias",
        "resolution": "'house' is an alias of route 'multi'",
        "strategy": "priority",
        "deadline_s": 900.0,
        "fallbacks": ["offline"],
    }
    verdicts = [(t["provider"], t["model"], t["in"], t["attempt"]) for t in doc["targets"]]
    assert verdicts == [
        ("openai", "gpt-image-1", True, 1),
        ("openai", "dall-e-3", True, 2),  # n=1 fits its max_n
        ("siliconflow", "black-forest-labs/FLUX.1-schnell", False, None),
        ("huggingface-space", "black-forest-labs/FLUX.1-schnell", False, None),
        ("pollinations", "flux", True, 3),
        ("modelscope", "Qwen/Qwen-Image", True, 4),
        ("demo", "demo-v1", False, None),
    ]
    assert doc["targets"][3]["reason"] == "weight 0 (disabled)"

    first, second, *_ = doc["attempts"]
    assert first["provider"] == "openai" and first["model"] == "gpt-image-1"
    assert first["key"] == mask_key(OPENAI_KEY) and first["keys"] == 2
    assert first["circuit"] == "closed"
    assert first["size"] == {
        "requested": "1600x1000",
        "used": "1536x1024",
        "adjusted": True,
        "allowed": "one of 1024x1024, 1536x1024, 1024x1536",
        "default": "1024x1024",
    }
    assert first["calls"] == [1]
    [step] = first["requests"]
    assert step["step"] == "generate" and step["method"] == "POST"
    assert step["url"] == "https://api.openai.com/v1/images/generations"
    assert step["headers"]["Authorization"] == f"Bearer {mask_key(OPENAI_KEY)}"
    assert step["body"] == {
        "kind": "json",
        "json": {"model": "gpt-image-1", "prompt": PROMPT, "n": 1, "size": "1536x1024"},
    }
    assert step["placeholders"] == [] and step["error"] is None
    assert second["requests"] is None  # only the first attempt is rendered without --all


def test_direct_name_and_default_route(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out = explain(capsys, config, "--model", "modelscope/Qwen/Qwen-Image")
    assert code == 0
    assert (
        "route: modelscope/Qwen/Qwen-Image ('modelscope/Qwen/Qwen-Image' names provider "
        "'modelscope' model 'Qwen/Qwen-Image' directly)"
    ) in out
    assert "size: auto (default 1024x1024) -> 1024x1024" in out
    code, out = explain(capsys, config)
    assert code == 0
    assert "route: multi (no model given: the default route for generate)" in out


def test_unknown_model_exits_2_with_suggestions(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, out = explain(capsys, config, "--model", "mult")
    assert code == 2
    assert "route: none: The model 'mult' does not exist" in out
    assert "did you mean: multi" in out


def test_nothing_can_serve_exits_2_and_still_shows_the_plan(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, out = explain(capsys, config, "--model", "offline")
    assert code == 2
    assert "out demo/demo-v1 (route offline, priority 0, weight 1): the built-in demo" in out
    assert (
        "problem: no upstream can serve 'offline' for generate right now (serve answers 503)" in out
    )
    assert "upstream requests" not in out
    code, out = explain(capsys, config, "--model", "openai/dall-e-3", "--n", "2")
    assert code == 2
    assert "problem: n must be at most 1 for model 'openai/dall-e-3' (serve answers 400)" in out


def test_config_that_does_not_build_exits_1(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    (config / "routes.yaml").write_text("routes:\n  r: {targets: [{provider: nope, model: m}]}\n")
    code, out = explain(capsys, config, "--model", "r")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"pixgate explain: the config in {config} does not build:"
    assert (
        "  routes.yaml:2:28 E301 routes.r.targets[0].provider: unknown provider 'nope' "
        "(known: demo, huggingface-space, modelscope, openai, pollinations, siliconflow)"
    ) in lines[1:]


EDITOR = """\
id: editor
base_url: https://edit.example/v1
auth: {query: key, keys: "${EDITOR_API_KEYS:-}"}
models:
  m1: {tasks: [generate, edit], sizes: [1024x1024, 512x512]}
tasks:
  edit:
    steps:
      - name: edit
        request:
          path: /edits
          multipart:
            - {name: prompt, value: "{{ prompt }}"}
            - {name: "image[]", file: "{{ images }}"}
            - {name: request, value: "{{ request_id }}"}
        images: data[].b64_json
  generate:
    steps:
      - name: gen
        request:
          path: /gen
          json: {prompt: "{{ prompt }}", init: "{{ image.data_uri }}", raw: "{{ image.b64 }}"}
        extract: {poll_url: links.poll}
      - name: poll
        request: {method: GET, url: "{{ steps.gen.poll_url }}"}
        until: done
        images: out
"""
STUB = """\
id: stub
base_url: https://stub.example
auth: {required: false}
models:
  only-gen: {sizes: [1024x1024]}
tasks:
  generate:
    steps:
      - {name: generate, request: {path: /g, json: {p: "{{ prompt }}"}}, images: data}
"""


@pytest.fixture
def editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    root = tmp_path / "editor"
    (root / "providers.d").mkdir(parents=True)
    (root / "providers.d" / "editor.yaml").write_text(EDITOR, encoding="utf-8")
    (root / "providers.d" / "stub.yaml").write_text(STUB, encoding="utf-8")
    routes = {
        "routes": {
            "ed": {
                "targets": [
                    {"provider": "stub", "model": "only-gen", "priority": 1},
                    {"provider": "editor", "model": "m1"},
                ]
            }
        }
    }
    (root / "routes.yaml").write_text(yaml.safe_dump(routes), encoding="utf-8")
    image = tmp_path / "input.png"
    Image.effect_noise((48, 48), 64).convert("RGB").save(image)
    use_env(monkeypatch, {"EDITOR_API_KEYS": "editor-secret-key-0001"})
    return root, image


def test_edit_multipart_with_input_images_and_masked_query_key(
    capsys: pytest.CaptureFixture[str], editor: tuple[Path, Path]
) -> None:
    root, image = editor
    size = image.stat().st_size
    args = ["--model", "ed", "--task", "edit", "--prompt", "make it blue"]
    code, out, _ = run(
        capsys, "explain", str(root), *args, "--image", str(image), "--image", str(image)
    )
    assert code == 0, out
    assert "editor-secret-key-0001" not in out
    assert f"input image: {image} (image/png, {size} bytes)" in out
    assert "out stub/only-gen (route ed, priority 1, weight 1): does not support edit" in out
    request = section(out, "step edit:", "notes:")
    assert "POST https://edit.example/v1/edits?key=edit…001" in request
    assert "Content-Type: multipart/form-data; boundary=<random>" in request
    assert stripped(section(request, "body:", "(timeout")) == [
        "part prompt: 'make it blue'",
        f"part image[]: file image.png (image/png, {size} bytes)",
        f"part image[]: file image.png (image/png, {size} bytes)",
        "part request: '<request_id>'",
    ]


def test_long_base64_and_data_uris_are_elided(
    capsys: pytest.CaptureFixture[str], editor: tuple[Path, Path]
) -> None:
    root, image = editor
    code, out, _ = run(capsys, "explain", str(root), "--model", "editor/m1", "--prompt", "p",
                       "--image", str(image), "--format", "json")  # fmt: skip
    assert code == 0
    gen, poll = json.loads(out)["attempts"][0]["requests"]
    b64_len = 4 * ((image.stat().st_size + 2) // 3)
    assert gen["body"]["json"] == {
        "prompt": "p",
        "init": f"<data:image/png;base64, {len('data:image/png;base64,') + b64_len} chars>",
        "raw": f"<base64, {b64_len} chars>",
    }
    # A URL an earlier step hands over is absolute: shown as the placeholder, auth still masked.
    assert poll["url"] == "<steps.gen.poll_url>?key=edit…001"
    assert poll["placeholders"] == ["<steps.gen.poll_url>"]


def test_input_that_is_not_an_image_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], editor: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = editor
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    code, out, err = run(capsys, "explain", str(root), "--model", "ed", "--task", "edit",
                         "--prompt", "p", "--image", str(text))  # fmt: skip
    assert code == 2 and out == ""
    assert err == f"pixgate explain: {text}: not a PNG, JPEG, WEBP or GIF image\n"


def test_on_gateway_demo_uses_the_local_port(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shipped(tmp_path / "demo", "demo")
    (root / "routes.yaml").write_text(
        "routes:\n  demo: {targets: [{provider: demo, model: demo-v1}]}\n"
    )
    use_env(monkeypatch, {"PIXGATE_PORT": "9123"})
    code, out, _ = run(capsys, "explain", str(root), "--model", "demo", "--prompt", "p")
    assert code == 0
    assert "POST http://127.0.0.1:9123/_demo/v1/images/generations" in out
    assert "on-gateway upstream (relative base_url)" in out


CONDITIONAL = """\
id: cond
base_url: https://cond.example
auth: {required: false}
models:
  m1: {}
tasks:
  generate:
    steps:
      - name: submit
        request: {path: /s, json: {p: "{{ prompt }}"}}
        extract: {status: status, get_url: urls.get}
      - name: poll
        when: "steps.submit.status != 'succeeded'"
        request: {method: GET, url: "{{ steps.submit.get_url }}"}
        until: "status == 'succeeded'"
        images: output
      - name: many
        when: "length(images) > `1`"
        request: {path: /many}
        images: out
"""


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_conditional_steps(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """A `when` that reads earlier answers is decided at run time; one that reads only the
    request is decided now, and a skipped step shows no request."""
    root = tmp_path / "cond"
    (root / "providers.d").mkdir(parents=True)
    (root / "providers.d" / "cond.yaml").write_text(CONDITIONAL, encoding="utf-8")
    routes = {"routes": {"c": {"targets": [{"provider": "cond", "model": "m1"}]}}}
    (root / "routes.yaml").write_text(yaml.safe_dump(routes), encoding="utf-8")
    use_env(monkeypatch, {})
    code, out, _ = run(capsys, "explain", str(root), "--model", "c", "--prompt", "p",
                       "--format", fmt)  # fmt: skip
    assert code == 0, out
    if fmt == "json":
        submit, poll, many = json.loads(out)["attempts"][0]["requests"]
        assert (submit["when"], submit["runs"]) == (None, True)
        assert (poll["when"], poll["runs"]) == ("steps.submit.status != 'succeeded'", None)
        assert poll["url"] == "<steps.submit.get_url>"
        assert (many["when"], many["runs"], many["method"]) == ("length(images) > `1`", False, "")
        return
    poll = section(out, "step poll:", "step many")
    assert "only when `steps.submit.status != 'succeeded'` (earlier answers decide" in poll
    assert "GET <steps.submit.get_url>" in poll
    assert "step many: skipped for this request (`when: length(images) > `1`` is false)" in out


FAN_OUT = """\
id: fan
base_url: https://fan.example
auth: {required: false}
models:
  m1: {images_per_call: 4}
tasks:
  generate:
    steps:
      - name: grid
        request: {path: /imagine, json: {p: "{{ prompt }}"}}
        extract: {id: id, buttons: buttons}
      - name: upscale
        fan_out: {items: steps.grid.buttons, as: button, limit: n, parallel: 2}
        steps:
          - name: action
            request: {path: /action, json: {b: "{{ button }}", t: "{{ steps.grid.id }}"}}
            extract: {task: result}
          - name: fetch
            request: {method: GET, path: "/task/{{ steps.action.task }}"}
            until: "status == 'SUCCESS'"
            images: imageUrl
"""


def test_fan_out_shows_one_items_requests(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "fan"
    (root / "providers.d").mkdir(parents=True)
    (root / "providers.d" / "fan.yaml").write_text(FAN_OUT, encoding="utf-8")
    routes = {"routes": {"f": {"targets": [{"provider": "fan", "model": "m1"}]}}}
    (root / "routes.yaml").write_text(yaml.safe_dump(routes), encoding="utf-8")
    use_env(monkeypatch, {})
    code, out, _ = run(capsys, "explain", str(root), "--model", "f", "--prompt", "p", "--n", "3")
    assert code == 0, out
    action = section(out, "step upscale[].action:", "step upscale[].fetch:")
    assert "fans out over `steps.grid.buttons`, at most n items, 2 at a time" in action
    assert '"b": "<button: an item of steps.grid.buttons>"' in action
    assert '"t": "<steps.grid.id>"' in action
    assert "GET https://fan.example/task/<steps.action.task>" in out
