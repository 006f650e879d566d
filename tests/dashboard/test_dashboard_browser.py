"""The performance dashboard in a real browser: headless Chromium (Debian's
``chromium``) driven by Playwright, against a live server.

Never downloads a browser: Playwright launches ``/usr/bin/chromium``.
Screenshots land in ``test-artifacts/`` for people to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from support.paths import repository
from support.server import NO_LOAD_ALERTS, ServerProcess, start_server
from support.waiting import UNIT
from support.ws import WsClient

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = repository() / "test-artifacts"
# Chromium as root in a container, with nothing reaching out to the network.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# CI installs chromium (.ci/run) and must run these; elsewhere they say why they did not run.
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None and os.environ.get("CI") != "true",
    reason="needs Debian's chromium: apt-get install chromium",
)


@pytest.fixture(scope="module")
def live() -> ServerProcess:
    server = start_server(
        env={
            "ROOMCAST_METRICS_INTERVAL": "0.5",
            "ROOMCAST_ALERT_MAX_CONNECTIONS": "3",
            **NO_LOAD_ALERTS,
        }
    )
    yield server  # type: ignore[misc]
    server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        await launched.close()


async def open_dashboard(browser: Browser, server: ServerProcess, token: str) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"http://{server.http}/performance-dashboard?token={token}")
    return page


async def test_the_dashboard_shows_connections_and_alerts_live(
    browser: Browser, live: ServerProcess
) -> None:
    page = await open_dashboard(browser, live, live.token("root", "super_admin"))
    await expect(page.locator("#status")).to_have_text("Live", timeout=10_000 * UNIT)
    assert "token=" not in page.url  # out of the address bar at once
    connections = page.locator("#connections")
    await expect(connections).to_have_text("1", timeout=5_000 * UNIT)  # the page itself
    clients = []
    for n in range(3):
        client = await WsClient.connect(live, live.token(f"u{n}", "user", tenant="acme"))
        await client.next("connection.confirmed")
        clients.append(client)
    await expect(connections).to_have_text("4", timeout=5_000 * UNIT)
    alert = page.locator("#alerts li[data-rule=connections_high]")
    await expect(alert).to_contain_text("firing 4 connections (over 3)", timeout=5_000 * UNIT)
    await expect(page.locator("#alert-count")).to_have_text("1")
    points = await page.locator("#cpu-chart polyline").get_attribute("points")
    assert points
    assert len(points.split()) >= 2
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    for client in clients:
        await client.close()
    await expect(connections).to_have_text("1", timeout=5_000 * UNIT)
    await expect(alert.first).to_have_class("warning resolved", timeout=5_000 * UNIT)
    await page.close()


async def test_a_tenant_user_sees_not_authorised(browser: Browser, live: ServerProcess) -> None:
    page = await open_dashboard(browser, live, live.token("alice", "user", tenant="acme"))
    denied = page.locator("#denied")
    await expect(denied).to_be_visible(timeout=10_000 * UNIT)
    await expect(denied).to_contain_text("Not authorised")
    await expect(page.locator("#board")).to_be_hidden()
    await page.close()


async def test_a_refused_token_sees_not_authorised(browser: Browser, live: ServerProcess) -> None:
    page = await open_dashboard(browser, live, "not-a-token")
    await expect(page.locator("#denied")).to_contain_text("refused", timeout=10_000 * UNIT)
    await page.close()


async def test_without_a_token_the_page_asks_for_one(browser: Browser, live: ServerProcess) -> None:
    page = await browser.new_page()
    await page.goto(f"http://{live.http}/performance-dashboard")
    await expect(page.locator("#login")).to_be_visible()
    await page.fill("#token-input", live.token("ops", "service"))
    await page.click("#login button[type=submit]")
    await expect(page.locator("#status")).to_have_text("Live", timeout=10_000 * UNIT)
    await page.close()


async def test_the_page_says_when_it_is_disconnected(browser: Browser) -> None:
    server = start_server(env={"ROOMCAST_METRICS_INTERVAL": "0.5"})
    page = await open_dashboard(browser, server, server.token("root", "super_admin"))
    await expect(page.locator("#status")).to_have_text("Live", timeout=10_000 * UNIT)
    server.stop()
    await expect(page.locator("#status")).to_contain_text("Disconnected", timeout=10_000 * UNIT)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-disconnected.png"))
    await page.close()


def test_the_page_ships_with_the_package() -> None:
    from roomcast.dashboard import ASSETS, asset

    for name in ASSETS:
        assert asset(name)
    assert asset("roomcast.js") == (repository() / "clients" / "js" / "roomcast.js").read_bytes()
    assert Path(repository() / "src" / "roomcast" / "dashboard" / "roomcast.js").is_symlink()
