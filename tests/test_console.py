"""The reviewer console: security rules over HTTP, and the pages end to end in a real browser.

The browser is Debian's Chromium driven by Playwright for Python, headless,
with the flags that keep it off the network; the app is the hooks API on
loopback with real Redis and Elasticsearch and a real worker. Screenshots of
each page go to ``$SLUDGE_TEST_ARTIFACTS`` (default ``test-artifacts/`` in the
checkout). Models have random weights (no pretrained weights here): the
tests check the pages and the label loop, not the similarity.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from hooks_stack import Stack, decided, upload  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("SLUDGE_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium as root needs --no-sandbox; the rest keep it from reaching for the network at all.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-domain-reliability", "--metrics-recording-only",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


@pytest.fixture(scope="module")
def console(tmp_path_factory, redis_server, es_server, clip_a, clip_b):
    s = Stack(tmp_path_factory.mktemp("console"), redis_server.url, es_server.url)
    try:
        s.start_api()
        s.admin = s.key("ingest,read,admin")
        s.reader = s.key("read")
        s.worker = s.start_worker("w-console")
        with s.client(s.admin) as c:
            r = c.post("/v1/bank/exemplars", json={"policy": "stacked-feeds",
                                                   "text": "two unrelated feeds stacked", "threshold": -1.0})
            assert r.status_code == 201, r.text
            s.jobs = [decided(c, upload(c, clip).json()["id"]) for clip in (clip_a, clip_b)]
        assert all(j["state"] == "decided" for j in s.jobs)
        yield s
    finally:  # also when setting up failed: no server left behind
        s.stop()


def signed_in(stack, key: str) -> httpx.Client:
    c = httpx.Client(base_url=stack.base, timeout=30, follow_redirects=False)
    page = c.get("/ui/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)
    r = c.post("/ui/login", data={"api_key": key, "nonce": nonce, "next": "/ui/recall"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/recall", r.text
    return c


def csrf_of(c: httpx.Client, path: str = "/ui/bank") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', c.get(path).text).group(1)


def test_pages_need_a_session_and_say_so(console):
    with httpx.Client(base_url=console.base, follow_redirects=False) as c:
        for path in ("/ui/recall", "/ui/bank", "/ui/decisions", "/ui/sweeps",
                     f"/ui/videos/{console.jobs[0]['video_id']}",
                     f"/ui/thumbs/{console.jobs[0]['video_id']}/0.jpg"):
            r = c.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next="), path
        r = c.get("/ui/login")
        assert r.status_code == 200 and "API key" in r.text
        assert r.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in r.headers[
            "content-security-policy"]
        # A sign-in form posted without the form's own token (from another site) is refused.
        r = c.post("/ui/login", data={"api_key": console.admin, "next": "/ui/recall"})
        assert r.status_code == 403
        assert "sludge_session" not in r.headers.get("set-cookie", "")


def test_bad_key_read_scope_csrf_and_traversal_are_refused(console):
    with httpx.Client(base_url=console.base, follow_redirects=False) as c:
        nonce = re.search(r'name="nonce" value="([^"]+)"', c.get("/ui/login").text).group(1)
        r = c.post("/ui/login", data={"api_key": "sk_0_nope", "nonce": nonce, "next": "/ui/recall"})
        assert r.status_code == 303 and "error=" in r.headers["location"]

    reader = signed_in(console, console.reader)
    cookie = reader.cookies.get("sludge_session")
    assert cookie
    token = csrf_of(reader)
    before = console.sludge("bank", "list", "--json").stdout
    r = reader.post("/ui/bank/exemplars", data={"csrf": token, "policy": "stacked-feeds", "text": "new text"})
    assert r.status_code == 403 and "admin" in r.text
    eid = json.loads(before.splitlines()[0])["exemplar_id"]
    r = reader.post(f"/ui/bank/exemplars/{eid}/disable", data={"csrf": token})
    assert r.status_code == 403
    assert console.sludge("bank", "list", "--json").stdout == before  # nothing changed

    admin = signed_in(console, console.admin)
    vid = console.jobs[0]["video_id"]
    r = admin.post("/ui/labels", data={"video_id": vid, "policy": "stacked-feeds", "verdict": "confirm"})
    assert r.status_code == 403 and "CSRF" in r.text
    r = admin.post("/ui/labels", data={"video_id": vid, "policy": "stacked-feeds", "verdict": "confirm",
                                       "csrf": "x" * 43})
    assert r.status_code == 403
    r = admin.post("/ui/bank/exemplars", data={"policy": "stacked-feeds", "text": "no token"})
    assert r.status_code == 403

    thumbs = [f"/ui/thumbs/{vid}/..%2F..%2F..%2Fredis.conf", f"/ui/thumbs/{vid}/%2e%2e",
              "/ui/thumbs/..%2F..%2Fetc/passwd", f"/ui/thumbs/{vid[:-1]}%2e/0.jpg", "/ui/thumbs/../../etc/passwd"]
    for path in thumbs:
        r = admin.get(path)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert b"root:" not in r.content

    # An "image" that is not one: refused with the file's name, nothing searched.
    r = admin.post("/ui/recall", data={"csrf": csrf_of(admin)},
                   files={"image": ("notes.png", b"plain text, not pixels", "image/png")})
    assert r.status_code == 400 and "notes.png" in r.text and "not an image" in r.text
    r = admin.post("/ui/recall", data={"csrf": csrf_of(admin)}, files={"image": ("empty.png", b"", "image/png")})
    assert r.status_code == 400 and "empty" in r.text

    # No page shows a path on the server, in or outside the data folder.
    for path in ("/ui/recall?q=test", "/ui/bank", "/ui/decisions", "/ui/sweeps", f"/ui/videos/{vid}"):
        body = admin.get(path).text
        assert str(console.tmp) not in body and "/tmp/" not in body, path

    # Signing in set the cookie HttpOnly and SameSite; revoking the key ends its sessions.
    c = httpx.Client(base_url=console.base, follow_redirects=False)
    nonce = re.search(r'name="nonce" value="([^"]+)"', c.get("/ui/login").text).group(1)
    r = c.post("/ui/login", data={"api_key": console.reader, "nonce": nonce, "next": "/ui/bank"})
    flags = r.headers["set-cookie"].lower()
    assert "httponly" in flags and "samesite=strict" in flags
    key_id = console.reader.split("_")[1]
    assert console.sludge("keys", "revoke", key_id).returncode == 0
    assert reader.get("/ui/bank").status_code == 303


def test_labels_feed_calibration_and_the_training_export(console):
    admin = signed_in(console, console.admin)
    a, b = console.jobs
    for job, verdict in ((a, "confirm"), (b, "dismiss")):
        r = admin.post("/ui/labels", data={"csrf": csrf_of(admin), "video_id": job["video_id"],
                                           "policy": "stacked-feeds", "verdict": verdict, "subject": "decision",
                                           "next": "/ui/decisions"},
                       headers={"accept": "application/json"})
        assert r.status_code == 200, r.text
        assert r.json()["label"]["verdict"] == verdict and "path" not in r.json()["label"]
    audit = admin.get("/ui/bank").text
    assert "label.confirm" in audit and "label.dismiss" in audit
    cal = console.sludge("bank", "calibrate", "--policy", "stacked-feeds", "--from-labels", "--json")
    assert cal.returncode == 0, cal.stderr
    got = json.loads(cal.stdout)
    assert got["positives"] == 1 and got["negatives"] == 1
    out = console.tmp / "labels.jsonl"
    r = console.sludge("labels", "export", "--policy", "stacked-feeds", "--out", str(out))
    assert r.returncode == 0, r.stderr
    from classifier.manifest import load_manifest

    rows = {row.id: row for row in load_manifest(out)}
    assert rows[a["video_id"]].label is True and rows[b["video_id"]].label is False
    assert Path(rows[a["video_id"]].path).is_file()


def test_the_console_in_a_real_browser(console, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="install the dev extra (playwright)")
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sweep = console.sludge("sweep", "--policy", "stacked-feeds", "--query", "two feeds", "--min-score", "-1")
    assert sweep.returncode == 0, sweep.stderr
    vid = console.jobs[0]["video_id"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            outside = []
            page.on("request", lambda req: outside.append(req.url)
                    if not req.url.startswith(console.base) else None)

            # Sign in (the sign-in page comes first: no session yet).
            page.goto(console.base + "/ui/recall")
            assert "/ui/login" in page.url
            page.fill("#api_key", console.admin)
            page.click("form.login button[type=submit]")
            page.wait_for_url("**/ui/recall")

            # Recall: the thumbnails load.
            page.fill("#q", "a moving test pattern")
            page.click("form.query button[type=submit]")
            page.wait_for_selector(".grid .card img")
            imgs = page.locator(".grid .card img")
            assert imgs.count() >= 2
            assert page.evaluate("() => [...document.querySelectorAll('.grid .card img')]"
                                 ".every(i => i.complete && i.naturalWidth > 0 && i.alt.length > 0)")
            page.screenshot(path=str(ARTIFACTS / "console-recall.png"), full_page=True)

            # Keyboard: the first card takes focus, Enter opens its video.
            page.keyboard.press("j")
            assert page.evaluate("() => document.activeElement.classList.contains('card')")
            page.keyboard.press("Enter")
            page.wait_for_url("**/ui/videos/**")
            assert page.locator("h2", has_text="Bank matches").count() == 1
            assert page.locator(".frames img").count() >= 1
            assert page.locator(".region").count() >= 1  # the layout drawn over a frame
            page.screenshot(path=str(ARTIFACTS / "console-video.png"), full_page=True)

            # Bank: add a text exemplar; it shows as a card and in the audit log.
            page.goto(console.base + "/ui/bank")
            page.fill("form.add input[name=policy]", "stacked-feeds")
            page.fill("form.add input[name=text]", "a game under a tv clip")
            page.click("form.add button[type=submit]")
            page.wait_for_selector("blockquote.textcard:has-text('a game under a tv clip')")
            assert page.locator("table.audit td", has_text="exemplar.add").count() >= 2
            page.screenshot(path=str(ARTIFACTS / "console-bank.png"), full_page=True)

            # Decisions feed.
            page.goto(console.base + "/ui/decisions")
            assert page.locator("#decisions tbody tr.card").count() >= 2
            page.screenshot(path=str(ARTIFACTS / "console-decisions.png"), full_page=True)

            # Sweeps: confirm a candidate with the keyboard shortcut.
            page.goto(console.base + "/ui/sweeps")
            card = page.locator(".grid .card", has=page.locator(f"a[href^='/ui/videos/{vid}']")).first
            card.focus()
            page.keyboard.press("c")
            card.locator(".label-status", has_text="confirmed").wait_for()
            page.screenshot(path=str(ARTIFACTS / "console-sweeps.png"), full_page=True)
            assert outside == [], f"the page reached outside the app: {outside[:5]}"
        finally:
            browser.close()

    rows = [json.loads(line) for line in console.sludge("labels", "export", "--policy",
                                                        "stacked-feeds").stdout.splitlines() if line.strip()]
    mine = [r for r in rows if r["id"] == vid]
    assert mine and mine[0]["label"] is True and mine[0]["subject"] == "candidate"
