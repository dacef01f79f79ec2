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
    # a label with no policy chosen (nothing flagged the video) is refused, in words, not guessed
    r = admin.post("/ui/labels", data={"video_id": vid, "policy": "", "verdict": "confirm",
                                       "csrf": csrf_of(admin)}, headers={"Accept": "application/json"})
    assert r.status_code == 400 and "choose the policy" in r.json()["error"]["message"]

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

    # The video itself, for the page's player (with its sound), to a signed-in reviewer only; seekable.
    r = admin.get(f"/ui/videos/{vid}/media", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.headers["content-type"].startswith("video/") and len(r.content) == 100
    assert httpx.get(f"{console.base}/ui/videos/{vid}/media").status_code == 303  # no session: sign in
    assert admin.get(f"/ui/videos/{'0' * 64}/media").status_code == 404
    # a favicon, served like the rest of the console's static files
    assert '<link rel="icon" href="/ui/static/favicon.svg"' in admin.get("/ui/bank").text
    assert admin.get("/ui/static/favicon.svg").headers["content-type"].startswith("image/svg+xml")
    # the Decisions table shows each video's first frame
    assert re.search(r'<td class="thumb"><img src="/ui/thumbs/[0-9a-f]{64}/', admin.get("/ui/decisions").text)

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
    # the live feed's script is told in words, not handed the sign-in page (it then says it stopped)
    r = reader.get("/ui/decisions/feed", headers={"Accept": "application/json"})
    assert r.status_code == 401 and "sign in again" in r.json()["error"]["message"]


def test_a_bad_filter_keeps_the_query_and_the_page(console):
    admin = signed_in(console, console.admin)
    for bad, words in (({"min_score": "abc"}, "is not a number"), ({"page": "abc"}, "is not a page number"),
                       ({"since": "last tuesday"}, "bad time filter")):
        r = admin.get("/ui/recall", params={"q": "two feeds", "layout": "vertical", **bad})
        assert r.status_code == 400 and words in r.text, (bad, r.text[:300])
        assert 'value="two feeds"' in r.text and "<option selected>vertical</option>" in r.text  # kept
        assert "Sign out" in r.text  # inside the normal page, with its navigation
    bank_older = admin.get("/ui/bank", params={"audit_page": "1", "page": "1"})
    assert bank_older.status_code == 200 and "← newer" in bank_older.text and "← previous exemplars" in bank_older.text
    for path in ("/ui/sweeps?page=abc", "/ui/decisions?before=abc", "/ui/decisions/feed?after=x", "/ui/bank?page=-1"):
        r = admin.get(path)
        assert r.status_code == 400 and "Sign out" in r.text, path
    # a threshold preview: stacked-feeds flags everything at -1; at 2 every scored decision would fall below
    r = admin.get("/ui/bank/policies/stacked-feeds/preview", params={"threshold": "2"},
                  headers={"Accept": "application/json"})
    d = r.json()["decisions"]
    assert r.status_code == 200 and d["scored"] >= 2 and d["down"] == d["scored"] and d["up"] == 0
    assert admin.get("/ui/bank/policies/stacked-feeds/preview", params={"threshold": "x"}).status_code == 400
    # pages: an older page of decisions starts after the newest entry and is not live
    newest = re.search(r'data-after="([0-9-]+)"', admin.get("/ui/decisions").text).group(1)
    older = admin.get("/ui/decisions", params={"before": newest})
    assert older.status_code == 200 and "back to the newest" in older.text and "data-feed" not in older.text
    assert older.text.count('<tr class="card') == admin.get("/ui/decisions").text.count('<tr class="card') - 1
    assert admin.get("/ui/sweeps", params={"page": "1"}).status_code == 200


def test_image_and_frame_search_keep_filters_and_pages(console):
    admin = signed_in(console, console.admin)
    vid = console.jobs[0]["video_id"]
    thumb = re.search(rf'/ui/thumbs/{vid}/[^"]+', admin.get(f"/ui/videos/{vid}").text).group(0)
    image = admin.get(thumb).content  # a real image: one of the video's own frames
    r = admin.post("/ui/recall", data={"csrf": csrf_of(admin), "min_score": "-1", "layout": ""},
                   files={"image": ("frame.jpg", image, "image/jpeg")})
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/recall?image=")
    assert "min_score=-1" in r.headers["location"]  # the filters travel with the image
    page = admin.get(r.headers["location"])
    assert page.status_code == 200 and 'class="card result' in page.text
    assert 'name="image" value="' in page.text and 'name="min_score" value="-1"' in page.text
    second = admin.get(r.headers["location"] + "&page=1")
    assert second.status_code == 200 and "page 2" in second.text and 'name="image" value="' in second.text
    # "similar": the frame's own stored vector, so its video comes first with score 1
    like = re.search(r'href="(/ui/recall\?like=[0-9a-f]{64}:[0-9.]+)"', admin.get(f"/ui/videos/{vid}").text).group(1)
    r = admin.get(like.replace("&amp;", "&"))
    assert r.status_code == 200, r.text[:300]
    first = re.search(r'class="card result".*?data-href="/ui/videos/([0-9a-f]{64})', r.text, re.DOTALL).group(1)
    assert first == vid and '<span class="score" title="best frame\'s similarity to the query">1.000' in r.text
    assert admin.get("/ui/recall", params={"like": "nope"}).status_code == 400
    assert admin.get("/ui/recall", params={"image": "0" * 64}).status_code == 400  # no longer kept: says so


def test_a_store_that_does_not_answer_is_a_page_in_words(tmp_path_factory, redis_server, console):
    """The history's Elasticsearch stopped while a reviewer is signed in (here: nothing listens on its port)."""
    down = Stack(tmp_path_factory.mktemp("es-down"), redis_server.url, "http://127.0.0.1:9")
    try:
        down.start_api()
        c = signed_in(down, down.key("read"))
        r = c.get("/ui/recall", params={"q": "two feeds", "layout": "vertical"})
        assert r.status_code == 503, r.text[:300]
        assert "not answering" in r.text and "Sign out" in r.text  # in words, inside the page
        assert "127.0.0.1:9" not in r.text and "SLUDGE_" not in r.text and "Elasticsearch" not in r.text
        assert 'href="/ui/recall?q=two+feeds&amp;layout=vertical">Try again' in r.text  # the query is kept
        r = c.get("/ui/recall", params={"q": "two feeds"}, headers={"Accept": "application/json"})  # the script's view
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        assert "127.0.0.1:9" not in r.text
        with down.client(down.key("read")) as api:  # the API itself still names what is down, for operators
            r = api.post("/v1/recall", json={"query": "two feeds"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        in_the_browser_then_revoked(down)
    finally:
        down.stop()


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
    # The same labels as image-text pairs for the encoder: the confirmed video's frames, the policy's texts.
    pairs_out = console.tmp / "pairs.jsonl"
    r = console.sludge("labels", "export", "--policy", "stacked-feeds", "--pairs", "--frames", "3",
                       "--out", str(pairs_out))
    assert r.returncode == 0, r.stderr
    pairs = [json.loads(line) for line in pairs_out.read_text().splitlines()]
    texts = {p["text"] for p in pairs}
    assert pairs and {p["group"] for p in pairs} == {f"video:{a['video_id']}"}
    assert len(pairs) == 3 * len(texts) and len({p["ts"] for p in pairs}) == 3
    assert {p["policy"] for p in pairs} == {"stacked-feeds"} and len({p["split"] for p in pairs}) == 1
    from indexer.encoders.pairs import load_pictures, read_pairs

    back, errors = read_pairs(pairs_out)  # paths are relative to the pairs file, and decode
    assert not errors and len(load_pictures(back)[0]) == 3 and not load_pictures(back)[1]


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

            # Nothing flagged these results under a policy: `c` must not guess one (it used to take the
            # alphabetically first); it says so in red, and no label is written.
            first = page.locator(".grid .card").first
            assert first.locator(".policy-select").input_value() == ""
            first.focus()
            page.keyboard.press("c")
            status = first.locator(".label-status.error", has_text="choose the policy")
            status.wait_for()
            assert status.get_attribute("role") == "alert"
            first.locator(".policy-select").blur()

            # Keyboard: the first card takes focus, Enter opens its video.
            page.keyboard.press("j")
            assert page.evaluate("() => document.activeElement.classList.contains('card')")
            page.keyboard.press("Enter")
            page.wait_for_url("**/ui/videos/**")
            assert page.locator("h2", has_text="Bank matches").count() == 1
            assert page.locator(".frames img").count() >= 1
            assert page.locator(".region").count() >= 1  # the layout drawn over a frame
            # What is flagged and why, above the fold: the summary with the decision, the evidence and
            # the verdict buttons; pass/fail beside every match; the player.
            box = page.locator(".summary").bounding_box()
            assert box is not None and box["y"] + box["height"] <= 900, box
            assert page.locator(".summary .badge").first.inner_text() in ("flagged", "cleared", "review")
            assert page.locator(".summary button.confirm").is_visible()
            assert page.locator(".pair").count() == page.locator(".vs.pass, .vs.fail").count() >= 1
            assert page.locator("video.player").count() == 1
            page.screenshot(path=str(ARTIFACTS / "console-video.png"), full_page=True)

            # Bank: add a text exemplar; it shows as a card and in the audit log.
            page.goto(console.base + "/ui/bank")
            page.fill("form.add input[name=policy]", "stacked-feeds")
            page.fill("form.add input[name=text]", "a game under a tv clip")
            page.click("form.add button[type=submit]")
            page.wait_for_selector("blockquote.textcard:has-text('a game under a tv clip')")
            assert page.locator("table.audit td", has_text="exemplar.add").count() >= 2
            # A threshold change shows before → after in the audit; Remove asks first.
            page.fill("form.add input[name=policy]", "audit-check")
            page.fill("form.add input[name=text]", "a tv clip over a game")
            page.fill("form.add input[name=threshold]", "0.3")
            page.click("form.add button[type=submit]")
            policy_form = page.locator("form[action='/ui/bank/policies/audit-check']")
            policy_form.locator("input[name=threshold]").fill("0.35")
            policy_form.locator(".preview", has_text="recent decisions").wait_for()  # what it would flip
            policy_form.locator("button[type=submit]").click()
            page.wait_for_selector("table.audit td:has-text('threshold 0.3 → 0.35')")
            section = page.locator("section.policy", has=page.locator("h2", has_text="audit-check"))
            remove = section.locator("form.confirm-first button")
            page.once("dialog", lambda d: d.dismiss())
            remove.click()
            assert section.locator("blockquote.textcard").count() == 1  # kept: the reviewer said no
            page.once("dialog", lambda d: d.accept())
            remove.click()
            page.wait_for_selector("table.audit td:has-text('(removed)')")
            assert section.locator("blockquote.textcard").count() == 0
            page.screenshot(path=str(ARTIFACTS / "console-bank.png"), full_page=True)

            # Decisions feed: each row labels under the policy that flagged it, or asks.
            page.goto(console.base + "/ui/decisions")
            assert page.locator("#decisions tbody tr.card").count() >= 2
            for row in page.evaluate("() => [...document.querySelectorAll('#decisions tbody tr.card')].map(tr => ["
                                     "tr.querySelector('td.policies').textContent.split(', ')[0], tr.querySelector('.policy-select')"
                                     ".value])"):
                assert row[1] == row[0], row  # the first matched policy, or '' (choose) when none matched
            # after a label the focus moves on to the next item still to label
            rows = page.locator("#decisions tbody tr.card")
            rows.nth(0).focus()
            page.keyboard.press("c")
            rows.nth(0).locator(".label-status", has_text="confirmed").wait_for()
            assert page.evaluate("() => document.activeElement === "
                                 "document.querySelectorAll('#decisions tbody tr.card')[1]")
            page.screenshot(path=str(ARTIFACTS / "console-decisions.png"), full_page=True)

            # Sweeps: confirm a candidate with the keyboard shortcut.
            page.goto(console.base + "/ui/sweeps")
            card = page.locator(".grid .card", has=page.locator(f"a[href^='/ui/videos/{vid}']")).first
            card.focus()
            page.keyboard.press("c")
            card.locator(".label-status", has_text="confirmed").wait_for()
            assert card.get_attribute("data-label") == "confirm"
            # the queue flows: a progress count, and labelled items can be hidden
            total = page.locator(".grid .card").count()
            assert re.fullmatch(rf"[1-9][0-9]* of {total} labelled", page.locator(".progress").inner_text())
            page.check(".hide-reviewed")
            assert not card.is_visible()
            page.uncheck(".hide-reviewed")
            assert card.is_visible()
            # Undo (`u`, or the button): a retraction, after which no label is in force; then label again
            card.focus()  # keys typed into a form control are the control's
            page.keyboard.press("u")
            card.locator(".label-status", has_text="undone").wait_for()
            assert card.get_attribute("data-label") is None
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
    assert not [r for r in rows if r["subject"] == "recall"]  # the refused `c` on Recall wrote nothing


def in_the_browser_then_revoked(stack) -> None:
    """The same outage seen in Chromium (the message, the navigation, a retry that keeps the query), then
    the reviewer's key revoked while the Decisions page is open: the live badge says it stopped, and why."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="install the dev extra (playwright)")
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    key = stack.key("read")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport=WIDTHS["desktop"])
            page.goto(stack.base + "/ui/login")
            page.fill("#api_key", key)
            page.click("form.login button[type=submit]")
            page.wait_for_url("**/ui/recall")
            page.goto(stack.base + "/ui/recall?q=two+feeds&layout=vertical")
            assert page.locator("p.error[role=alert]", has_text="not answering").is_visible()
            assert page.locator("header nav a", has_text="Decisions").is_visible()
            assert "layout=vertical" in page.locator("a", has_text="Try again").get_attribute("href")
            page.screenshot(path=str(ARTIFACTS / "console-store-down.png"), full_page=True)
            page.goto(stack.base + "/ui/decisions")
            assert page.locator(".live").inner_text() == "live"
            assert stack.sludge("keys", "revoke", key.split("_")[1]).returncode == 0
            page.locator(".live.error", has_text="session has ended").wait_for(timeout=15_000)
            page.screenshot(path=str(ARTIFACTS / "console-feed-stopped.png"), full_page=True)
        finally:
            browser.close()


AXE_JS = Path(os.environ.get("SLUDGE_AXE_JS") or
              Path.home() / ".cache/sludge/axe-core-4.14.1/node_modules/axe-core/axe.min.js")
WIDTHS = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}


def test_every_page_at_both_widths(console):
    """Each page at 1366×900 and 390×844: a screenshot, no sideways scrolling, tap targets of 44 px on a
    phone, no serious or critical axe-core violation; and what a reviewer sees above the fold, measured."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="install the dev extra (playwright)")
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    if not AXE_JS.is_file():
        pytest.skip(f"axe-core is not installed at {AXE_JS} (make test installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    vid = console.jobs[0]["video_id"]
    pages = {"recall": "/ui/recall?q=a+moving+test+pattern", "video": f"/ui/videos/{vid}", "bank": "/ui/bank",
             "decisions": "/ui/decisions", "sweeps": "/ui/sweeps", "error": "/ui/recall?q=x&min_score=abc"}
    fold: dict[str, dict] = {}
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            for width, viewport in WIDTHS.items():
                # bypass_csp: only so that the test can inject axe-core; the pages' own CSP is tested above
                ctx = browser.new_context(viewport=viewport, bypass_csp=True)
                page = ctx.new_page()
                page.goto(console.base + "/ui/login")
                check_page(page, "login", width, viewport, problems)
                page.fill("#api_key", console.admin)
                page.click("form.login button[type=submit]")
                page.wait_for_url("**/ui/recall")
                for name, path in pages.items():
                    page.goto(console.base + path)
                    page.wait_for_load_state("networkidle")
                    check_page(page, name, width, viewport, problems)
                    if width == "desktop" and name in ("recall", "video", "decisions"):
                        fold[name] = above_the_fold(page, viewport["height"])
                ctx.close()
        finally:
            browser.close()
    (ARTIFACTS / "console-above-the-fold.json").write_text(json.dumps(fold, indent=1))
    assert not problems, "\n".join(problems)
    assert fold["recall"]["cards_fully_visible"] >= 2, fold
    assert fold["video"]["summary_visible"], fold


def check_page(page, name: str, width: str, viewport: dict, problems: list[str]) -> None:
    page.screenshot(path=str(ARTIFACTS / f"console-{name}-{width}.png"), full_page=True)
    wide = page.evaluate("() => document.documentElement.scrollWidth")
    if wide > viewport["width"] + 1:
        culprits = page.evaluate("""(w) => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > w && ![...e.children].some(
                     c => c.getBoundingClientRect().right > w))
            .slice(0, 3).map(e => e.outerHTML.slice(0, 80))""", viewport["width"])
        problems.append(f"{name} at {width}: the page is {wide} px wide (scrolls sideways): {culprits}")
    if width == "phone":
        # a checkbox is tapped through its label; every other control is its own target
        small = page.evaluate("""() => [...document.querySelectorAll('button, select, input:not([type=hidden])')]
            .filter(e => e.offsetParent !== null)
            .map(e => [e.outerHTML.slice(0, 60), Math.round((e.type === 'checkbox' ? (e.closest('label') || e) : e)
                       .getBoundingClientRect().height)])
            .filter(([, h]) => h < 44)""")
        if small:
            problems.append(f"{name} at {width}: tap targets under 44 px: {small[:4]}")
    page.add_script_tag(path=str(AXE_JS))
    found = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 2).map(n => n.target.join(' ')).join(' | '))""")
    problems += [f"{name} at {width}: axe {v}" for v in found]


def above_the_fold(page, height: int) -> dict:
    """What is fully inside the first screen: cards, and the fields of the first one."""
    return page.evaluate("""(h) => {
        const inside = e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= h && r.height > 0; };
        const cards = [...document.querySelectorAll('.grid .card, #decisions tbody tr.card')];
        const first = cards.find(inside);
        const summary = document.querySelector('.summary');
        const r = first ? first.getBoundingClientRect() : null;
        const grid = first && first.closest('.grid');
        const columns = !first ? 0 : grid ? getComputedStyle(grid).gridTemplateColumns.split(' ').length : 1;
        return {cards: cards.length, cards_fully_visible: cards.filter(inside).length,
                // what one screen holds of this page's cards: the first card's size and its columns
                first_card_top: r && Math.round(r.top), card_height: r && Math.round(r.height), columns: columns,
                cards_per_screen: r ? columns * Math.floor((h - r.top + 12) / (r.height + 12)) : 0,
                first_card_text: first ? first.innerText.replace(/\\s+/g, ' ').slice(0, 200) : null,
                summary_visible: summary ? inside(summary) : null,
                summary_text: summary ? summary.innerText.replace(/\\s+/g, ' ').slice(0, 300) : null};
    }""", height)
