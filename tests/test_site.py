"""The website: a strict build, every page of the table of contents, no other host.

A session fixture builds the site once with ``tools/build_book.py``
(``jupyter-book build . -W --all``). Static checks read the HTML; the browser check
serves ``_build/html`` on 127.0.0.1, drives headless Chromium over the DevTools
protocol and asserts that MathJax typeset the math, the Mermaid diagram became an SVG
(over http and from a file:// URL, as a reader opening index.html from disk sees it),
every image loaded, and no request left the machine. Screenshots go to
``_build/screenshots/``.

Environment:
- ``GANREC_SITE_REUSE=1`` reuses an existing ``_build/html`` whose last build (recorded
  in ``_build/build_book.json``) succeeded, instead of building again.
- ``CHROMIUM`` names the browser binary (default: the first of chromium,
  chromium-browser, google-chrome on PATH).
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
RECORD = ROOT / "_build" / "build_book.json"
SHOTS = ROOT / "_build" / "screenshots"
CHAPTER_RE = re.compile(r"^book/ch(\d\d)_\w+$")


# ----------------------------------------------------------------------------- build


@pytest.fixture(scope="session")
def site() -> dict:
    """Build the website once per session; return the build record."""
    reuse = os.environ.get("GANREC_SITE_REUSE") == "1"
    if reuse and RECORD.exists() and (HTML / "index.html").exists():
        record = json.loads(RECORD.read_text())
        if record.get("returncode") == 0:
            record["log"] = "(reused an earlier build)"
            return record
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_book.py"), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    record["returncode"] = proc.returncode
    record["log"] = (proc.stdout + proc.stderr)[-15000:]
    return record


@pytest.fixture(scope="session")
def built(site) -> Path:
    if site["returncode"] != 0:
        pytest.fail(f"the strict (-W) build failed:\n{site['log']}", pytrace=False)
    return HTML


def toc_files() -> list[str]:
    """Every document named in _toc.yml (root first), without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    out = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                out.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [str(Path(f).with_suffix("")) if Path(f).suffix else f for f in out]


def chapter_pages() -> list[str]:
    return [f for f in toc_files() if CHAPTER_RE.match(f)]


def test_build_passes_with_warnings_as_errors(site):
    assert site["returncode"] == 0, f"strict build failed:\n{site['log']}"
    assert site.get("strict") is True


def test_every_toc_page_is_built(built):
    missing = [f for f in toc_files() if not (built / f"{f}.html").exists()]
    assert not missing, f"toc pages without HTML: {missing}"


def test_ten_chapters(built):
    chapters = chapter_pages()
    numbers = sorted(int(CHAPTER_RE.match(c).group(1)) for c in chapters)
    assert numbers == list(range(1, 11)), (
        f"chapter landing pages in _toc.yml: {chapters}"
    )
    index = (built / "book" / "index.html").read_text(encoding="utf-8")
    for chapter in chapters:
        assert (built / f"{chapter}.html").exists(), chapter
        name = Path(chapter).name
        assert f'href="{name}.html"' in index, (
            f"{chapter} is not in the site navigation"
        )


class _AssetLinks(HTMLParser):
    """Collect the URLs a page loads as scripts, stylesheets, fonts, images, frames."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.module_bodies: list[str] = []
        self._in_module = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        rel = (a.get("rel") or "").lower()
        if tag == "script":
            if a.get("src"):
                self.urls.append(a["src"])
            self._in_module = a.get("type") == "module" and not a.get("src")
        elif (
            tag == "link"
            and a.get("href")
            and any(
                r in rel
                for r in ("stylesheet", "preload", "modulepreload", "icon", "font")
            )
        ):
            self.urls.append(a["href"])
        elif tag in ("img", "iframe", "source", "embed") and a.get("src"):
            self.urls.append(a["src"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_module = False

    def handle_data(self, data):
        if self._in_module:
            self.module_bodies.append(data)


def test_no_page_loads_from_another_host(built):
    offenders = {}
    for page in sorted(built.rglob("*.html")):
        if "_static" in page.relative_to(built).parts:
            continue
        parser = _AssetLinks()
        parser.feed(page.read_text(encoding="utf-8"))
        bad = [u for u in parser.urls if re.match(r"^(https?:)?//", u)]
        for body in parser.module_bodies:
            bad += re.findall(
                r"""(?:from|import)\s*\(?\s*["']((?:https?:)?//[^"']+)""", body
            )
        if bad:
            offenders[str(page.relative_to(built))] = sorted(set(bad))
    assert not offenders, f"pages that load from another host: {offenders}"


def test_math_and_mermaid_served_locally(built):
    assert (built / "_static" / "vendor" / "mathjax" / "tex-chtml.js").exists()
    assert (built / "_static" / "vendor" / "mermaid" / "mermaid.esm.min.mjs").exists()
    assert (built / "_static" / "vendor" / "mermaid" / "mermaid.min.js").exists()
    fonts = list((built / "_static" / "vendor" / "mathjax").rglob("*.woff"))
    assert fonts, "MathJax's woff fonts were not copied into the site"


def test_mermaid_loads_as_classic_script(built):
    """No ES-module import of Mermaid: browsers block those from file:// pages."""
    html = (built / "book" / "ch02_concepts.html").read_text(encoding="utf-8")
    assert 'class="mermaid"' in html
    assert re.search(r'<script defer="defer" src="[^"]*mermaid\.min\.js', html), (
        "ch02 does not load the classic Mermaid build (book/_ext/mermaid_classic.py)"
    )
    assert 'type="module"' not in html, "ch02 still holds a <script type=module>"


def test_notebook_pages_offer_ipynb_download(built):
    notebooks = [f for f in toc_files() if f.startswith("notebooks/")]
    if not notebooks:
        pytest.skip("no notebooks in _toc.yml yet")
    for nb in notebooks:
        page = (built / f"{nb}.html").read_text(encoding="utf-8")
        assert f"_sources/{nb}.ipynb" in page, f"{nb}.html has no .ipynb download"
        assert (built / "_sources" / f"{nb}.ipynb").exists()


# --------------------------------------------------------------------------- browser


def find_chromium() -> str | None:
    names = [
        os.environ.get("CHROMIUM", ""),
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    for name in filter(None, names):
        found = shutil.which(name)
        if found:
            return found
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".css": "text/css",
        ".woff": "font/woff",
        ".woff2": "font/woff2",
        ".svg": "image/svg+xml",
        ".json": "application/json",
        ".ipynb": "application/x-ipynb+json",
    }

    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="session")
def served(built):
    """Serve _build/html on 127.0.0.1 (a free port) for the session."""
    handler = functools.partial(_QuietHandler, directory=str(built))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class CDP:
    """A minimal DevTools-protocol client for one page target."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(
        self, method: str, params: dict | None = None, timeout: float = 60
    ) -> dict:
        self.next_id += 1
        msg_id = self.next_id
        self.ws.send(
            json.dumps({"id": msg_id, "method": method, "params": params or {}})
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(method)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    self.ws.settimeout(60)
                    return msg
        raise TimeoutError(method)

    def js(self, expression: str, timeout: float = 60):
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(
                f"JS error in {expression!r}: {result['exceptionDetails']}"
            )
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.js(expression):
                return True
            time.sleep(0.2)
        return False

    def close(self):
        self.ws.close()


@pytest.fixture(scope="session")
def browser(served):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(
            "no chromium binary found (looked for $CHROMIUM, chromium, "
            "chromium-browser, google-chrome); install Debian's chromium "
            "(`apt-get install chromium`) to run the browser check"
        )
    pytest.importorskip(
        "websocket", reason="websocket-client is needed for the DevTools protocol"
    )
    profile = Path(tempfile.mkdtemp(prefix="ganrec-chromium-"))
    proc = subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--disable-default-apps",
            "--disable-extensions",
            "--mute-audio",
            "--hide-scrollbars",
            "--window-size=1280,900",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"chromium ({chromium}) did not start its DevTools endpoint"
                )
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/json/list", timeout=10
        ) as r:
            targets = json.load(r)
        page = next(t for t in targets if t.get("type") == "page")
        cdp = CDP(page["webSocketDebuggerUrl"])
        cdp.send("Network.enable")
        cdp.send("Page.enable")
        cdp.send("Runtime.enable")
        cdp.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        SHOTS.mkdir(parents=True, exist_ok=True)
        yield cdp
        cdp.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def load(cdp: CDP, url: str) -> None:
    cdp.events.clear()
    cdp.send("Page.navigate", {"url": url})
    cdp.wait_event("Page.loadEventFired", timeout=60)
    assert cdp.wait_for("document.readyState === 'complete'")


def wait_mathjax(cdp: CDP) -> None:
    """Wait until MathJax has typeset the page (Sphinx loads it only where needed)."""
    if not cdp.js("!!document.querySelector('script[src*=\"mathjax\"]')"):
        return
    ok = cdp.wait_for(
        "!!(window.MathJax && MathJax.startup && MathJax.startup.promise)", timeout=30
    )
    assert ok, "MathJax did not start (is _static/vendor/mathjax served?)"
    cdp.js("MathJax.startup.promise.then(() => true)")


def images_loaded(cdp: CDP) -> list[str]:
    """The src of every <img> that has not loaded (after waiting a little)."""
    expr = (
        "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src)"
    )
    cdp.wait_for(f"({expr}).length === 0", timeout=15)
    return cdp.js(expr)


def screenshot(cdp: CDP, name: str, selector: str | None = None) -> Path:
    if selector:
        cdp.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (e) e.scrollIntoView({block: 'center'}); return !!e; })()"
        )
        time.sleep(0.3)
    data = cdp.send("Page.captureScreenshot", {"format": "png"})["data"]
    path = SHOTS / f"{name}.png"
    path.write_bytes(base64.b64decode(data))
    return path


def external_requests(cdp: CDP) -> list[str]:
    urls = [
        e["params"]["request"]["url"]
        for e in cdp.events
        if e["method"] == "Network.requestWillBeSent"
    ]
    return [
        u
        for u in urls
        if not re.match(
            r"^(https?://(127\.0\.0\.1|localhost)(:\d+)?/|data:|blob:|about:)", u
        )
    ]


def js_exceptions(cdp: CDP) -> list[str]:
    return [
        e["params"]["exceptionDetails"].get("text", "")
        + " "
        + str(
            e["params"]["exceptionDetails"].get("exception", {}).get("description", "")
        )
        for e in cdp.events
        if e["method"] == "Runtime.exceptionThrown"
    ]


def display_math_page(built: Path) -> str:
    """book/ch04_math if it holds display math, else the first toc page that does."""
    pages = ["book/ch04_math"] + [f for f in toc_files() if f != "book/ch04_math"]
    for f in pages:
        path = built / f"{f}.html"
        if path.exists() and 'class="math notranslate nohighlight"' in path.read_text(
            encoding="utf-8"
        ):
            return f
    pytest.fail("no page of the site holds display math ($$ ... $$)")


def check_page(cdp: CDP, base: str, page: str, shot: str, selector: str | None = None):
    """Load a page, wait for MathJax; check images, requests and JS errors."""
    load(cdp, f"{base}/{page}.html")
    wait_mathjax(cdp)
    broken = images_loaded(cdp)
    assert not broken, f"{page}: images that did not load: {broken}"
    screenshot(cdp, shot, selector)
    outside = external_requests(cdp)
    assert not outside, f"{page}: requests that left localhost: {outside}"
    errors = js_exceptions(cdp)
    assert not errors, f"{page}: JavaScript exceptions: {errors}"


@pytest.mark.browser
def test_browser_index(browser, served):
    check_page(browser, served, "book/index", "index")
    assert browser.js("document.title").strip()
    # search box and dark-mode switch are part of every page
    assert browser.js(
        "!!document.querySelector('.search-button-field, .search-button')"
    )
    assert browser.js("!!document.querySelector('.theme-switch-button')")


@pytest.mark.browser
def test_browser_chapter1(browser, served, built):
    pages = ["book/ch01_background"] + [
        f for f in toc_files() if f.startswith("notebooks/ch01_")
    ]
    for i, page in enumerate(pages):
        name = f"ch01-{i}-{Path(page).name}"
        check_page(browser, served, page, name, "img")
        if browser.js("!!document.querySelector('.solution.dropdown')"):
            # the course layer: exercise blocks with solutions collapsed
            assert browser.js(
                "[...document.querySelectorAll('.solution.dropdown')]"
                ".every(s => s.classList.contains('toggle-hidden'))"
            ), f"{page}: a solution is not collapsed"
            screenshot(browser, f"{name}-exercise", ".exercise")


@pytest.mark.browser
def test_browser_mathjax_typesets_display_math(browser, served, built):
    page = display_math_page(built)
    check_page(
        browser, served, page, f"math-{Path(page).name}", "mjx-container[display]"
    )
    n = browser.js("document.querySelectorAll('mjx-container').length")
    assert n > 0, f"{page}: MathJax produced no mjx-container"
    assert browser.js(
        "[...document.querySelectorAll('div.math')]"
        ".every(d => d.querySelector('mjx-container'))"
    ), f"{page}: some display math was left untypeset"
    text = browser.js("document.body.innerText")
    assert "$$" not in text, f"{page}: raw $$ left in the text"
    assert "\\[" not in text, f"{page}: raw \\[ left in the text"
    # CommonHTML output draws with MathJax's own web fonts, served by the site
    assert browser.wait_for(
        "[...document.fonts].some("
        "f => f.family.includes('MJX') && f.status === 'loaded')",
        timeout=15,
    ), f"{page}: MathJax's fonts did not load"


MERMAID_DRAWN = (
    "document.querySelectorAll('.mermaid').length > 0 && "
    "[...document.querySelectorAll('.mermaid')].every(m => {"
    " const s = m.querySelector('svg');"
    " return s && s.querySelectorAll('.node').length > 0"
    " && s.getBBox().width > 0; })"
)


def check_mermaid(cdp: CDP, url: str, page: str, shot: str, local: str) -> None:
    """Load a page with a diagram; check it becomes an SVG, in light and dark mode.

    ``local``: a regex for the request URLs that count as this machine's.
    """
    load(cdp, url)
    assert cdp.wait_for(MERMAID_DRAWN, timeout=30), (
        f"{page}: the Mermaid diagram did not become an SVG with nodes ({url})"
    )
    assert not cdp.js(
        "[...document.querySelectorAll('.mermaid svg')].some("
        "s => s.getAttribute('aria-roledescription') === 'error')"
    ), f"{page}: Mermaid drew its syntax-error picture"
    screenshot(cdp, shot, ".mermaid svg")
    outside = [u for u in external_requests(cdp) if not re.match(local, u)]
    assert not outside, f"{page}: requests that left localhost: {outside}"
    assert not js_exceptions(cdp), js_exceptions(cdp)
    # dark mode: the theme switch re-renders the diagram with the dark theme
    cdp.js("document.documentElement.dataset.theme = 'dark'; true")
    time.sleep(1.0)
    assert cdp.wait_for(MERMAID_DRAWN), f"{page}: no diagram in dark mode"
    # drawn with the dark Mermaid theme, not inverted again by the theme's CSS filter
    assert cdp.js(
        "[...document.querySelectorAll('pre.mermaid > svg')].every("
        "s => getComputedStyle(s).filter === 'none')"
    ), f"{page}: the dark diagram is still inverted by a CSS filter"
    screenshot(cdp, f"{shot}-dark", ".mermaid svg")
    cdp.js("document.documentElement.dataset.theme = 'light'; true")
    assert not js_exceptions(cdp), js_exceptions(cdp)


@pytest.mark.browser
def test_browser_mermaid_becomes_svg(browser, served, built):
    page = "book/ch02_concepts"
    html = (built / f"{page}.html").read_text(encoding="utf-8")
    assert 'class="mermaid"' in html, f"{page} holds no ```{{mermaid}}``` diagram"
    check_mermaid(browser, f"{served}/{page}.html", page, "ch02-mermaid", r"^$")


@pytest.mark.browser
def test_browser_mermaid_from_file_url(browser, built):
    """`make book` says: open _build/html/index.html; from disk (file://) Chrome
    refuses ES-module imports, so the site must load Mermaid as a classic script."""
    page = "book/ch02_concepts"
    url = (built / f"{page}.html").resolve().as_uri()
    site = re.escape(built.resolve().as_uri() + "/")
    check_mermaid(browser, url, page, "ch02-mermaid-file", f"^{site}")
