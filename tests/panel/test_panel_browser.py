"""The admin panel in a real headless Chromium against a real `pixgate serve` process.

Screenshots of every page go to tests/artifacts/ (git-ignored) for a person to look at."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.gateway import REPO, free_port, get_json, serve_process, wait_healthy

ADMIN_KEY = "admin-Key-for-panel-tests-0123456789"
PROVIDER_KEY = "sk-panel-provider-secret-abcdef123456"
ARTIFACTS = REPO / "tests" / "artifacts"
XSS = '<img src=x onerror="window.__xss=1">'


@dataclass
class Panel:
    url: str
    port: int
    config: Path
    proc: subprocess.Popen[bytes]


def start(tmp: Path) -> Panel:
    config = tmp / "config"
    config.mkdir()
    shutil.copy(REPO / "routes.yaml", config / "routes.yaml")
    shutil.copytree(REPO / "providers.d", config / "providers.d")
    port = free_port()
    env = {
        "PIXGATE_ADMIN_KEY": ADMIN_KEY,
        "OPENAI_API_KEYS": PROVIDER_KEY,  # configured, never called: must never be shown
        "PIXGATE_POLL_INTERVAL_SCALE": "0.01",
    }
    proc = serve_process(config, port, tmp / "files", env=env)
    wait_healthy(port, deadline=30)
    return Panel(f"http://127.0.0.1:{port}", port, config, proc)


def stop(panel: Panel) -> None:
    panel.proc.send_signal(signal.SIGTERM)
    panel.proc.wait(timeout=15)


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Panel]:
    gw = start(tmp_path_factory.mktemp("panel"))
    try:
        yield gw
    finally:
        stop(gw)


def login(browser: Any, panel: Panel, width: int = 1280) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda d: (_ for _ in ()).throw(AssertionError(f"dialog: {d.message}")))
    page.goto(f"{panel.url}/admin/")
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_selector("#nav", timeout=15_000)
    return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"panel-{name}.png"), full_page=True)


def status_of(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def generate(panel: Panel, prompt: str = "a fox") -> None:
    body = {"model": "demo", "prompt": prompt, "size": "64x64", "response_format": "b64_json"}
    assert get_json(f"{panel.url}/v1/images/generations", body)["data"]


def test_anonymous_gets_the_login_page_and_the_api_refuses(browser: Any, panel: Panel) -> None:
    page = browser.new_page()
    page.goto(f"{panel.url}/admin/")
    assert page.is_visible("form#login") and not page.is_visible("#nav")
    shot(page, "login")
    for path in ("/admin/config", "/admin/keys", "/admin/api/overview", "/admin/api/logs"):
        assert status_of(f"{panel.url}{path}") == 401, path
    assert status_of(f"{panel.url}/admin/config", headers={"Authorization": "Bearer no"}) == 401
    ok = status_of(f"{panel.url}/admin/config", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert ok == 200  # scripts use the admin key as a Bearer token
    page.close()


def test_wrong_keys_back_off(browser: Any, tmp_path: Path) -> None:
    gw = start(tmp_path)  # its own gateway: the back-off is per address
    try:
        page = browser.new_page()
        page.goto(f"{gw.url}/admin/")
        page.fill("#key", "wrong-key")
        page.click("button[type=submit]")
        page.wait_for_function("() => document.getElementById('message').textContent.length > 0")
        assert "wrong admin key" in page.text_content("#message")
        page.fill("#key", ADMIN_KEY)  # even the right key waits out the back-off
        page.click("button[type=submit]")
        page.wait_for_function(
            "() => document.getElementById('message').textContent.includes('too many')"
        )
        assert not page.is_visible("#nav")
        page.close()
    finally:
        stop(gw)


def test_overview_numbers_move_after_requests(browser: Any, panel: Panel) -> None:
    page = login(browser, panel)
    page.wait_for_selector("#requests-5m")
    before = int(page.text_content("#requests-5m") or "0")
    generate(panel)
    generate(panel)
    page.wait_for_function(
        f"() => Number(document.getElementById('requests-5m')?.textContent) >= {before + 2}",
        timeout=20_000,
    )
    assert page.locator("svg.chart rect.requests").count() >= 1  # the chart has a bar
    shot(page, "overview")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    shot(page, "overview-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    page.context.close()


def test_a_log_line_appears_live(browser: Any, panel: Panel) -> None:
    page = login(browser, panel)
    page.goto(f"{panel.url}/admin/#logs")
    page.wait_for_selector("#log-lines")
    marker = "live-log-marker-7d1"
    status_of(f"{panel.url}/v1/models?{marker}")
    page.wait_for_function(
        "() => document.getElementById('log-lines').textContent.includes('path=/v1/models')",
        timeout=15_000,
    )
    shot(page, "logs")
    page.context.close()


def test_playground_image_reaches_the_gallery_and_prompts_stay_text(
    browser: Any, panel: Panel
) -> None:
    page = login(browser, panel)
    page.goto(f"{panel.url}/admin/#playground")
    page.wait_for_selector("#playground-form")
    page.select_option("select[name=model]", "demo")
    page.fill("textarea[name=prompt]", XSS)
    page.fill("input[name=size]", "256x256")
    page.click("#playground-form button[type=submit]")
    page.wait_for_selector("#playground-meta", timeout=20_000)
    assert "provider demo" in page.text_content("#playground-meta")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#playground-result img')]"
        ".some(i => i.naturalWidth > 0)"
    )
    shot(page, "playground")
    # The image is stored (response_format url), so the gallery shows it, as a thumbnail.
    page.goto(f"{panel.url}/admin/#gallery")
    page.wait_for_selector("#gallery-grid .tile")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery-grid img')].every(i => i.naturalWidth > 0)"
    )
    tiles = page.locator("#gallery-grid .tile").count()
    shot(page, "gallery")
    page.locator("#gallery-grid .tile button.danger").first.click()
    page.wait_for_function(
        f"() => document.querySelectorAll('#gallery-grid .tile').length === {tiles - 1}"
    )
    # The prompt went into the log and the overview's error list as text, never as markup.
    page.goto(f"{panel.url}/admin/#logs")
    page.wait_for_selector("#log-lines li")
    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src=x]").count() == 0
    page.context.close()


def test_reload_button_shows_diagnostics_and_the_old_config_keeps_serving(
    browser: Any, panel: Panel
) -> None:
    page = login(browser, panel)
    page.goto(f"{panel.url}/admin/#config")
    page.wait_for_selector("#reload")
    version = page.text_content("#live-version")
    broken = panel.config / "providers.d" / "broken.yaml"
    broken.write_text("id: broken\ntitle: [unclosed\n")
    try:
        page.click("#reload")
        page.wait_for_selector("#reload-diagnostics li", timeout=15_000)
        text = page.text_content("#reload-diagnostics") or ""
        assert "broken.yaml" in text
        shot(page, "config-rejected")
        generate(panel)  # the last good config still serves
        page.reload()
        page.wait_for_selector("#live-version")
        assert page.text_content("#live-version") == version
        assert "broken.yaml" in (page.text_content("#rejected") or "")
    finally:
        broken.unlink()
        page.context.close()


def test_cross_site_and_tokenless_posts_are_refused(browser: Any, panel: Panel) -> None:
    page = login(browser, panel)
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["pixgate_admin"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    cookie = f"pixgate_admin={session['value']}"
    csrf = json.loads(page.evaluate("fetch('/admin/api/session').then(r => r.text())"))["csrf"]
    url = f"{panel.url}/admin/reload"
    assert status_of(url, b"", {"Cookie": cookie}) == 403  # no CSRF token
    headers = {"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    assert status_of(url, b"", headers) == 403  # another origin
    headers = {"Cookie": cookie, "X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
    assert status_of(url, b"", headers) == 403
    assert status_of(url, b"", {"Cookie": cookie, "X-CSRF-Token": csrf}) == 200
    page.context.close()


def test_no_key_material_in_any_page_script_or_response(browser: Any, panel: Panel) -> None:
    page = login(browser, panel)
    bodies: list[str] = []

    def keep(response: Any) -> None:
        kind = response.headers.get("content-type") or ""
        if any(t in kind for t in ("json", "html", "javascript", "css")):
            bodies.append(response.text())

    page.on("response", keep)
    for name in ("overview", "config", "keys", "logs", "gallery", "playground", "usage"):
        page.goto(f"{panel.url}/admin/#{name}")
        page.wait_for_timeout(600)
        if name in ("config", "keys"):
            shot(page, name)
        bodies.append(page.content())
    assert len(bodies) > 8
    for text in bodies:
        assert PROVIDER_KEY not in text and ADMIN_KEY not in text
    page.context.close()


def test_usage_page_counts_requests_by_client_and_model(browser: Any, panel: Panel) -> None:
    generate(panel)  # no key on this loopback gateway: counted as (anonymous)
    page = login(browser, panel)
    page.goto(f"{panel.url}/admin/#usage")
    page.wait_for_selector("#usage-form")
    page.wait_for_function(
        "() => document.getElementById('main').textContent.includes('(anonymous)')",
        timeout=15_000,
    )
    text = page.text_content("#main") or ""
    assert "demo-v1" in text and "total" in text
    shot(page, "usage")
    page.context.close()
