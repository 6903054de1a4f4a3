"""The web console in a real headless Chromium (Playwright driving the system's Chromium),
against the shop running as processes, in both modes: a saga seen going from running to
completed without a reload, a failed saga's compensations in order, a dead letter
replayed, a stuck saga cancelled and seen compensating. With ``SAGAKIT_SCREENSHOTS`` set to
a folder, the main pages are saved there (``docs/console`` holds the README's)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from sagakit.devstack.processes import free_port
from sagakit.fleet import CONSOLE, Fleet
from sagakit.messaging import new_message
from sagakit.messaging.codec import encode_value
from sagakit.messaging.transport import OutgoingRecord
from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport
from sagakit.runtime.host import Mode
from sagakit.topics import topic_name
from tests.e2e.conftest import Shop

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(240)]

HINT = (
    "the browser tests need Chromium: sudo apt-get install chromium"
    " (or set SAGAKIT_CHROMIUM to a Chromium binary)"
)
FLAGS = [  # headless, and no calls home (they would be refused here)
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str:
    found = (
        os.environ.get("SAGAKIT_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not found:
        pytest.fail(HINT, pytrace=False)
    return found


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium(), args=FLAGS)
        yield b
        await b.close()


@pytest.fixture(scope="module")
async def consoles(shop_fleets: dict[Mode, Fleet]) -> AsyncIterator[dict[Mode, str]]:
    """The console of each mode's shop, as the operator ``ada``."""
    urls = {}
    for mode, fleet in shop_fleets.items():
        fleet.env = {**fleet.env, "SAGAKIT_OPERATOR": "ada"}
        urls[mode] = (await fleet.start_console(free_port())).url
    yield urls
    for fleet in shop_fleets.values():
        fleet.stop([CONSOLE])
        del fleet.processes[CONSOLE]


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    yield await context.new_page()
    await context.close()


def console_of(shop: Shop, consoles: dict[Mode, str]) -> str:
    return consoles[shop.fleet.mode]


async def screenshot(page: Page, shop: Shop, name: str) -> None:
    folder = os.environ.get("SAGAKIT_SCREENSHOTS")
    if folder and shop.fleet.mode is Mode.ORCHESTRATION:
        os.makedirs(folder, exist_ok=True)
        await page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


async def open_saga(page: Page, console: str, saga_id: str) -> None:
    """Find the saga by its id in the list (which shows it as soon as it is stored) and
    open its page."""
    await page.goto(f"{console}/sagas?q={saga_id}")
    row = page.locator(f'tr[data-saga="{saga_id}"]')
    await expect(row).to_be_visible(timeout=30_000)
    await row.get_by_role("link").click()
    await expect(page.locator("#status")).to_be_visible()


async def test_a_saga_goes_from_running_to_completed_live(
    shop: Shop, consoles: dict[Mode, str], page: Page
) -> None:
    product, customer = await shop.product(stock=5, price_cents=100), await shop.customer(1_000)
    shop.fleet.pause("inventory")  # the saga waits at its first step
    try:
        order = await shop.order(customer, product, 1)
        await page.goto(f"{console_of(shop, consoles)}/sagas?status=running")
        row = page.locator(f'tr[data-saga="{order}"]')
        await expect(row).to_be_visible(timeout=20_000)
        await expect(row.locator(".badge").first).to_have_text("RUNNING")
        await row.get_by_role("link").click()
        await expect(page.locator("#status")).to_have_text("RUNNING")
        running = page.locator('g.step[data-step="reserve_stock"]')
        await expect(running).to_have_attribute("data-state", "running")
        await expect(page.locator("#live")).to_have_class("live on")
        retry = page.locator('form[action$="/actions/retry-step"]')
        await retry.locator('input[name="note"]').fill("inventory looked stuck")
        await retry.get_by_role("button").click()
        await expect(page.locator(".flash.done")).to_contain_text("retry-step")
        await expect(page.locator("#timeline")).to_contain_text(
            "step retried by ada: inventory looked stuck"
        )
        again = page.locator('#waterfall .span-row[data-step="reserve_stock"]')
        await expect(again).to_have_count(2)  # the first send, and the one just now
        await page.evaluate("window.stillThisPage = true")
    finally:
        shop.fleet.proceed("inventory")
    await expect(page.locator("#status")).to_have_text("COMPLETED", timeout=60_000)
    assert await page.evaluate("window.stillThisPage === true"), "the page was reloaded"
    for step in ("reserve_stock", "take_payment", "commit_stock", "confirm_order"):
        await expect(page.locator(f'g.step[data-step="{step}"]')).to_have_attribute(
            "data-state", "done"
        )
    await screenshot(page, shop, "saga-completed")
    await page.goto(f"{console_of(shop, consoles)}/sagas")
    await expect(page.locator(f'tr[data-saga="{order}"] .badge').first).to_have_text("COMPLETED")


async def test_a_failed_saga_shows_its_compensations_in_order(
    shop: Shop, consoles: dict[Mode, str], page: Page
) -> None:
    product, poor = await shop.product(stock=5, price_cents=500), await shop.customer(100)
    order = await shop.order(poor, product, 1)
    assert (await shop.settled(order))["status"] == "CANCELLED"
    await open_saga(page, console_of(shop, consoles), order)
    await expect(page.locator("#status")).to_have_text("FAILED", timeout=30_000)
    await expect(page.locator("#reason")).to_have_text("insufficient funds")
    states = {
        "create_order": "undone",
        "reserve_stock": "undone",
        "take_payment": "failed",
        "commit_stock": "pending",
    }
    for step, state in states.items():
        await expect(page.locator(f'g.step[data-step="{step}"]')).to_have_attribute(
            "data-state", state
        )
    sent = await page.locator("#timeline tbody tr td:nth-child(5) summary").all_inner_texts()
    assert sent == ["inventory.reserve", "payment.process", "inventory.release", "order.cancel"]
    bars = page.locator("#waterfall .span-row")
    kinds = [
        (await r.get_attribute("data-step"), await r.get_attribute("data-kind"))
        for r in await bars.all()
    ]
    assert kinds == [
        ("reserve_stock", "action"),
        ("take_payment", "action"),
        ("reserve_stock", "compensation"),
        ("create_order", "compensation"),
    ]
    assert await bars.nth(1).get_attribute("data-outcome") == "failed"
    reply = page.locator('#timeline details:has(summary:text-is("payment.failed"))')
    await reply.locator("summary").click()
    await expect(reply.locator("pre")).to_contain_text("insufficient funds")
    await screenshot(page, shop, "saga-compensated")


async def test_a_dead_letter_is_replayed_from_the_console(
    shop: Shop, consoles: dict[Mode, str], page: Page
) -> None:
    ns = shop.fleet.settings.namespace
    if shop.fleet.mode is Mode.ORCHESTRATION:  # a command its handler cannot read
        topic, kind = topic_name(ns, "inventory.reserve"), "inventory.reserve"
    else:  # a saga start every follower refuses
        topic, kind = topic_name(ns, "saga.order"), "order.created"
    key = f"poison-{uuid.uuid4().hex[:8]}"
    poison = new_message(kind, {"quantity": "many"}, key=key, topic=topic, correlation_id=key)
    transport = KafkaTransport(KafkaOptions(bootstrap=shop.fleet.stack.kafka_bootstrap))
    async with transport.producer() as producer:
        record = OutgoingRecord(topic, key.encode(), encode_value(poison), ())
        await producer.send_many([record])
    url = f"{console_of(shop, consoles)}/dead-letters"
    rows = page.locator(f'tr:has(code:text-is("{key}"))')
    row = rows.first
    groups = 1 if shop.fleet.mode is Mode.ORCHESTRATION else 4  # every follower refuses it
    for _ in range(60):  # dead-lettered within a second or two
        await page.goto(url)
        if await rows.count() == groups:
            break
        await page.wait_for_timeout(500)
    assert await rows.count() == groups
    await expect(row).to_contain_text("MessageError")
    row = page.locator(f'tr[data-letter="{await row.get_attribute("data-letter")}"]')
    await row.locator('input[name="letter"]').check()
    await page.locator('#replay input[name="note"]').fill("the schema was fixed")
    await screenshot(page, shop, "dead-letters")
    await page.get_by_role("button", name="Replay the selected").click()
    await expect(page.locator(".flash.done")).to_contain_text("replayed 1 letter")
    await expect(row.locator(".replayed")).to_contain_text("by ada")
    await expect(row.locator(".replayed")).to_contain_text("the schema was fixed")
    # Handled again by every group that gave up on it (one replay releases the record in
    # each, or the saga's copies would part), which refuse it again: a new letter each.
    for _ in range(60):
        await page.goto(url)
        if await rows.count() == 2 * groups:
            break
        await page.wait_for_timeout(500)
    assert await rows.count() == 2 * groups
    assert (
        await page.locator(f'tr:has(code:text-is("{key}")) .replayed:text("by ada")').count()
        == groups
    )


async def test_a_stuck_saga_is_cancelled_and_compensates(
    shop: Shop, consoles: dict[Mode, str], page: Page
) -> None:
    product, customer = await shop.product(stock=5, price_cents=100), await shop.customer(1_000)
    shop.fleet.pause("payment")  # the charge is never answered
    try:
        order = await shop.order(customer, product, 2)
        await open_saga(page, console_of(shop, consoles), order)
        paying = page.locator('g.step[data-step="take_payment"]')
        await expect(paying).to_have_attribute("data-state", "running", timeout=30_000)
        form = page.locator('form[action$="/actions/cancel"]')
        note = form.locator('input[name="note"]')
        assert await note.evaluate("n => n.validity.valueMissing"), "a note is required"
        await form.get_by_role("button").click()  # no note: the browser does not post it
        await page.wait_for_timeout(300)
        assert await page.locator(".flash").count() == 0
        assert await page.locator("#status").inner_text() == "RUNNING"
        await form.locator('input[name="note"]').fill("payment provider down, customer asked")
        await form.get_by_role("button").click()
        await expect(page.locator(".flash.done")).to_contain_text("cancel")
        await expect(page.locator("#status")).to_have_text("COMPENSATING")
        await expect(page.locator("#timeline")).to_contain_text(
            "cancelled by ada: payment provider down, customer asked"
        )
    finally:
        shop.fleet.proceed("payment")
    await expect(page.locator("#status")).to_have_text("FAILED", timeout=60_000)
    sent = await page.locator("#timeline tbody tr td:nth-child(5) summary").all_inner_texts()
    assert sent[-3:] == ["payment.refund", "inventory.release", "order.cancel"], sent
    await expect(page.locator("#reason")).to_contain_text("cancelled: payment provider down")
    assert (await shop.settled(order))["status"] == "CANCELLED"
    stock: dict[str, Any] = await shop.get("inventory", f"/products/{product}")
    assert (stock["available"], stock["reserved"], stock["sold"]) == (5, 0, 0)
    money: dict[str, Any] = await shop.get("payment", f"/customers/{customer}")
    assert money["balance_cents"] == 1_000, "the charge (if it happened) was refunded"
    await screenshot(page, shop, "saga-cancelled")
    await page.goto(f"{console_of(shop, consoles)}/sagas")
    await expect(page.locator(f'tr[data-saga="{order}"] .badge').first).to_have_text("FAILED")
    await screenshot(page, shop, "sagas")


def form_token(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found, "a form carries the token"
    return found[1]


async def test_bad_requests_get_a_clear_4xx(shop: Shop, consoles: dict[Mode, str]) -> None:
    """Malformed forms, a foreign form, a missing note, unknown sagas and actions: each a
    4xx with a reason, never a 5xx; an action the saga is not in a state for is refused
    with the reason, and nothing changes."""
    base = console_of(shop, consoles)
    product, customer = await shop.product(stock=5, price_cents=100), await shop.customer(1_000)
    order = await shop.order(customer, product, 1)
    assert (await shop.settled(order))["status"] == "CONFIRMED"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        page = await http.get(f"/sagas/orchestrator/{order}")
        for _ in range(60):  # the tracker may apply the last event a moment later
            if "COMPLETED" in page.text:
                break
            await asyncio.sleep(0.25)
            page = await http.get(f"/sagas/orchestrator/{order}")
        token = form_token((await http.get("/dead-letters")).text)
        act = f"/sagas/orchestrator/{order}/actions/cancel"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        cases = [
            (await http.post(act, json={"note": "x"}), 400, "must be a form"),
            (await http.post(act, content=b"\xff\xfe", headers=form), 400, "not UTF-8"),
            (await http.post(act, data={"note": "x", "form_token": "forged"}), 403, "not from"),
            (await http.post(act, data={"note": "  ", "form_token": token}), 400, "note is"),
            (await http.post(act, data={"note": "x" * 2001, "form_token": token}), 400, "longer"),
            (
                await http.post(
                    f"/sagas/orchestrator/{order}/actions/explode",
                    data={"note": "x", "form_token": token},
                ),
                404,
                "no action",
            ),
            (await http.get("/sagas/orchestrator/no-such-saga"), 404, "no saga"),
            (await http.get("/sagas/nobody/x"), 404, "no saga"),
            (await http.get("/sagas?status=sleepy"), 400, "status must be"),
            (await http.get("/sagas?q=a%00b"), 400, "control characters"),
            (await http.get("/sagas/orchestrator/a%00b"), 404, "no saga"),
            (await http.post(act, data={"note": "a\x00b", "form_token": token}), 400, "control"),
            (
                await http.post(act, content=b"note=" + b"x" * 70_000, headers=form),
                413,
                "larger",
            ),
            (await http.get("/sagas", headers={"Host": "evil.example"}), 400, "Invalid host"),
            (
                await http.post("/dead-letters/replay", data={"form_token": token, "note": "n"}),
                400,
                "pick",
            ),
            (
                await http.post(
                    "/dead-letters/replay",
                    data={"form_token": token, "note": "n", "letter": "0;DROP"},
                ),
                400,
                "PARTITION:OFFSET",
            ),
        ]
        for response, status, reason in cases:
            assert response.status_code == status, (response.request.url, response.text[:300])
            assert reason in response.text
        refused = await http.post(act, data={"note": "too late", "form_token": token})
        assert refused.status_code == 303
        assert "refused" in refused.headers["location"]
        after = await http.get(refused.headers["location"])
        assert "is for a saga running" in after.text and "COMPLETED" in after.text
        async with http.stream("GET", "/events") as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            async for chunk in events.aiter_text():
                assert chunk.startswith("retry:")
                break


async def test_with_users_set_a_credential_is_required_and_named(
    shop: Shop, consoles: dict[Mode, str]
) -> None:
    fleet = shop.fleet
    port = free_port()
    env = {
        **os.environ,
        "SAGAKIT_DATABASE_URL": fleet.stack.database_url,
        "SAGAKIT_KAFKA_BOOTSTRAP": fleet.stack.kafka_bootstrap,
        "SAGAKIT_NAMESPACE": fleet.settings.namespace,
        "SAGAKIT_CONSOLE_USERS": "grace:hopper",
    }
    cmd = [sys.executable, "-m", "sagakit", "console", *fleet.services.values()]
    without = {k: v for k, v in env.items() if k != "SAGAKIT_CONSOLE_USERS"}
    refused = await asyncio.create_subprocess_exec(
        *cmd, "--host", "0.0.0.0", "--port", str(port), env=without, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(refused.communicate(), 60)
    assert refused.returncode == 2 and b"SAGAKIT_CONSOLE_USERS" in err, err
    proc = await asyncio.create_subprocess_exec(
        *cmd, "--port", str(port), env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(120):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/health")).status_code == 200:
                        break
                await asyncio.sleep(0.25)
            anonymous = await http.get("/sagas")
            assert anonymous.status_code == 401 and "Basic" in anonymous.headers["www-authenticate"]
            assert (await http.get("/sagas", auth=("grace", "wrong"))).status_code == 401
            seen = await http.get("/sagas", auth=("grace", "hopper"))
            assert seen.status_code == 200 and "grace" in seen.text
            # An action is recorded with the name the credential proves.
            product = await shop.product(stock=5, price_cents=100)
            customer = await shop.customer(1_000)
            fleet.pause("inventory")
            try:
                order = await shop.order(customer, product, 1)
                saga = f"/sagas/orchestrator/{order}"
                for _ in range(120):
                    page = await http.get(saga, auth=("grace", "hopper"))
                    if page.status_code == 200:
                        break
                    await asyncio.sleep(0.25)
                posted = await http.post(
                    f"{saga}/actions/retry-step",
                    data={"note": "nudge", "form_token": form_token(page.text)},
                    auth=("grace", "hopper"),
                )
                assert posted.status_code == 303 and "done" in posted.headers["location"]
                for _ in range(120):  # (choreographed: once the tracker applied the event)
                    page = await http.get(saga, auth=("grace", "hopper"))
                    if "step retried by grace: nudge" in page.text:
                        break
                    await asyncio.sleep(0.25)
                assert "step retried by grace: nudge" in page.text
            finally:
                fleet.proceed("inventory")
            assert (await shop.settled(order))["status"] == "CONFIRMED"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
