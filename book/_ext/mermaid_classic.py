"""Load Mermaid as a classic script, so diagrams render from ``file://`` too.

sphinxcontrib-mermaid puts an inline ``<script type="module">`` on every page with a
diagram; it starts with ``import mermaid from "<mermaid_use_local>"`` and then renders
the diagrams (dark/light theme, re-render on a theme switch, fullscreen button).
Browsers refuse ES-module imports from ``file://`` pages (Chrome: "blocked by CORS
policy"), so a reader who opens ``_build/html/index.html`` from disk saw no diagram.

This extension runs after sphinxcontrib-mermaid's ``html-page-context`` handler and
rewrites that script on each page:

* ``<script defer src="_static/<mermaid_classic_js>">``: Mermaid's IIFE build
  (``dist/mermaid.min.js`` of the npm package, vendored by ``tools/vendor_assets.py``),
  which sets ``window.mermaid``; classic scripts load from ``file://`` and ``http://``.
* the plugin's own script body minus its ``import`` line, as a classic inline script
  wrapped in a function that runs on ``DOMContentLoaded`` (after the deferred
  ``mermaid.min.js``, before ``load``), so it behaves as the module did.

Everything else (``mermaid_init_config``, ``mermaid_light_theme`` and
``mermaid_dark_theme``, the theme-switch observer, the fullscreen button) is
sphinxcontrib-mermaid's, unchanged.
One addition: pydata-sphinx-theme's dark mode puts ``filter: invert(...)`` on
``pre.mermaid > svg``, which turned the already dark-themed diagram into grey boxes with
grey text; the script switches that filter off. ELK and ZenUML plugins are ES modules
only, so they must stay off. Pages without a doctree (search, genindex) get no Mermaid.
"""

from __future__ import annotations

import re
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

# `import mermaid from "./_static/vendor/mermaid/mermaid.esm.min.mjs";`
_IMPORT_MERMAID = re.compile(r"^[ \t]*import\s+mermaid\s+from\s+[^;\n]+;?[ \t]*$", re.M)
_ANY_IMPORT = re.compile(r"^[ \t]*import\b|\bimport\s*\(", re.M)

_WRAPPER = """\
(function () {
"use strict";
function startMermaid() {
if (!window.mermaid) {
    console.error("mermaid_classic: window.mermaid is missing; is %(src)s served?");
    return;
}
const mermaid = window.mermaid;
// pydata-sphinx-theme inverts `pre.mermaid > svg` in dark mode (it assumes a light
// diagram); the diagram is already drawn with mermaid_dark_theme there, so undo it.
const undoInvert = document.createElement("style");
undoInvert.textContent = "html[data-theme=dark] body pre.mermaid > svg {filter: none}";
document.head.appendChild(undoInvert);
%(body)s
}
if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", startMermaid);
} else {
    startMermaid();
}
})();
"""


def _is_mermaid_module(js) -> bool:
    attrs = getattr(js, "attributes", None) or {}
    return (
        not getattr(js, "filename", None)
        and attrs.get("type") == "module"
        and bool(_IMPORT_MERMAID.search(attrs.get("body", "")))
    )


def use_classic_script(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Replace sphinxcontrib-mermaid's module script on this page by classic scripts."""
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    modules = [js for js in scripts if _is_mermaid_module(js)]
    if not modules:
        return
    if doctree is None:
        # search.html, genindex.html: sphinxcontrib-mermaid adds its script to pages
        # without a doctree too, but they hold no diagram; spare them the 2.7 MB.
        for js in modules:
            scripts.remove(js)
        return
    src = app.config.mermaid_classic_js
    for js in modules:
        body = _IMPORT_MERMAID.sub("", js.attributes["body"], count=1)
        if _ANY_IMPORT.search(body):
            raise ExtensionError(
                "mermaid_classic: sphinxcontrib-mermaid's script still imports an ES "
                "module (ELK or ZenUML?); keep mermaid_include_elk and "
                "mermaid_include_zenuml off, classic scripts cannot import."
            )
        scripts.remove(js)
        # Same priority as the plugin's script; the sort is stable, so the library
        # comes first and the inline script after it.
        app.add_js_file(src, priority=js.priority, defer="defer")
        app.add_js_file(
            None, body=_WRAPPER % {"src": src, "body": body}, priority=js.priority
        )


def check_vendored(app: Sphinx) -> None:
    """Warn (an error under -W) when the classic build is not in html_static_path."""
    if app.builder.format != "html":
        return
    src = app.config.mermaid_classic_js
    if "://" in src or src.startswith("/"):
        return
    confdir = Path(app.confdir)
    if not any((confdir / p / src).is_file() for p in app.config.html_static_path):
        logger.warning(
            "mermaid_classic: %s not found in html_static_path %s; run "
            "`make assets` (tools/vendor_assets.py)",
            src,
            app.config.html_static_path,
        )


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinxcontrib.mermaid")
    # Path relative to html_static_path (like mermaid_use_local), or a full URL.
    app.add_config_value("mermaid_classic_js", "vendor/mermaid/mermaid.min.js", "html")
    app.connect("builder-inited", check_vendored)
    # sphinxcontrib-mermaid's install_js runs at the default priority 500.
    app.connect("html-page-context", use_classic_script, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
