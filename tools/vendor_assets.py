"""Fetch the site's third-party JavaScript (MathJax, Mermaid) so it needs no CDN.

Run by ``make assets``. Each package is fetched once with ``npm pack NAME@VERSION`` into
``.cache/npm/``, its tarball is checked against the sha512 integrity hash pinned below,
and the files the site needs are extracted into ``book/_static/vendor/<name>/`` with the
package's licence. Sphinx copies ``book/_static`` into ``_build/html/_static``, and
``_config.yml`` points ``mathjax_path``, ``mermaid_use_local`` and
``mermaid_classic_js`` there.

Idempotent: a package whose vendor folder holds a stamp with the pinned integrity and
the current file selection is skipped. Nothing here is committed
(``book/_static/vendor/`` is git-ignored).

Usage: python tools/vendor_assets.py [--force]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "npm"
VENDOR = ROOT / "book" / "_static" / "vendor"
STAMP = ".vendored"


@dataclass(frozen=True)
class Asset:
    """One npm package and the files of it that the website serves."""

    name: str
    version: str
    integrity: str  # `npm view NAME@VERSION dist.integrity`
    keep: tuple[str, ...]  # path prefixes inside the tarball's package/ folder
    strip: str  # prefix removed from kept paths (e.g. "es5/")
    skip_suffixes: tuple[str, ...] = ()

    @property
    def selection(self) -> str:
        """A digest of the files kept: a changed selection is extracted again."""
        spec = repr((self.keep, self.strip, self.skip_suffixes)).encode()
        return "files-" + hashlib.sha256(spec).hexdigest()[:12]

    @property
    def tarball(self) -> Path:
        return CACHE / f"{self.name}-{self.version}.tgz"

    @property
    def target(self) -> Path:
        return VENDOR / self.name

    def wanted(self, member: str) -> str | None:
        """Map a tarball member to its path under the vendor folder, or None."""
        if not member.startswith("package/"):
            return None
        rel = member[len("package/") :]
        if rel.upper().startswith(("LICENSE", "LICENCE", "COPYING")):
            return rel
        if rel.endswith(self.skip_suffixes):
            return None
        if not any(rel == k or rel.startswith(k) for k in self.keep):
            return None
        return rel[len(self.strip) :] if rel.startswith(self.strip) else rel


ASSETS = (
    # MathJax 3: the combined TeX-to-CommonHTML component, plus what it loads at run
    # time: the woff-v2 fonts, TeX extensions (autoload, \require), the menu and its
    # accessibility extensions with the speech-rule-engine's maps.
    Asset(
        name="mathjax",
        version="3.2.2",
        integrity="sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/"
        "FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        keep=(
            "es5/tex-chtml.js",
            "es5/output/chtml/fonts/woff-v2/",
            "es5/input/tex/extensions/",
            "es5/ui/",
            "es5/a11y/",
            "es5/sre/",
        ),
        strip="es5/",
    ),
    # Mermaid 11 (sphinxcontrib-mermaid 2.x's default version is 11.12.1): the classic
    # IIFE build mermaid.min.js (one file, sets window.mermaid) that the pages load
    # through book/_ext/mermaid_classic.py, because browsers refuse ES-module imports
    # from file:// pages; and the ES module with its lazily imported chunks, which
    # sphinxcontrib-mermaid's `mermaid_use_local` names (used over http only if that
    # extension is removed).
    Asset(
        name="mermaid",
        version="11.12.1",
        integrity="sha512-UlIZrRariB11TY1RtTgUWp65tphtBv4CSq7vyS2ZZ2TgoMjs2nloq+wFqxiwcx"
        "lhHUvs7DPGgMjs2aeQxz5h9g==",
        keep=(
            "dist/mermaid.min.js",
            "dist/mermaid.esm.min.mjs",
            "dist/chunks/mermaid.esm.min/",
        ),
        strip="dist/",
        skip_suffixes=(".map",),
    ),
)


def sri_sha512(path: Path) -> str:
    """The npm/SRI form of a file's sha512: ``sha512-<base64>``."""
    h = hashlib.sha512()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha512-" + base64.b64encode(h.digest()).decode()


def npm_pack(asset: Asset) -> None:
    """Download the tarball with `npm pack` into the cache folder."""
    npm = shutil.which("npm")
    if npm is None:
        sys.exit(
            "vendor_assets: `npm` was not found on PATH. It is needed once, to fetch "
            f"{asset.name}@{asset.version} for the website (no CDN is used). Install "
            "Node.js/npm (Debian: `apt-get install npm`), or copy a verified "
            f"{asset.tarball.name} into {CACHE}."
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    spec = f"{asset.name}@{asset.version}"
    proc = subprocess.run(
        [npm, "pack", spec, "--pack-destination", str(CACHE), "--silent"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0 or not asset.tarball.exists():
        sys.exit(
            f"vendor_assets: `npm pack {spec}` failed (exit {proc.returncode}).\n"
            f"{proc.stderr.strip()}"
        )


def verified_tarball(asset: Asset) -> Path:
    """Return the cached tarball, fetching it if needed; never returns a bad file."""
    if not asset.tarball.exists():
        npm_pack(asset)
    got = sri_sha512(asset.tarball)
    if got != asset.integrity:
        bad = asset.tarball.with_suffix(".tgz.bad")
        asset.tarball.replace(bad)
        sys.exit(
            f"vendor_assets: checksum mismatch for {asset.tarball.name}:\n"
            f"  expected {asset.integrity}\n  got      {got}\n"
            f"The file was moved to {bad} and not used; run again to re-fetch it."
        )
    return asset.tarball


def extract(asset: Asset, tarball: Path) -> int:
    """Extract the kept files into a fresh vendor folder; return how many."""
    tmp = asset.target.with_name(asset.target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = 0
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            rel = asset.wanted(member.name)
            if rel is None:
                continue
            dest = (tmp / rel).resolve()
            if not dest.is_relative_to(tmp.resolve()):
                sys.exit(f"vendor_assets: refusing path {member.name!r} in {tarball}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out)
            n += 1
    (tmp / STAMP).write_text(
        f"{asset.name}@{asset.version} {asset.integrity} {asset.selection}\n"
    )
    shutil.rmtree(asset.target, ignore_errors=True)
    tmp.rename(asset.target)
    return n


def is_current(asset: Asset) -> bool:
    stamp = asset.target / STAMP
    return stamp.exists() and stamp.read_text().split() == [
        f"{asset.name}@{asset.version}",
        asset.integrity,
        asset.selection,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="re-extract everything")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    for asset in ASSETS:
        spec = f"{asset.name}@{asset.version}"
        if is_current(asset) and not args.force:
            print(f"vendor_assets: {spec} already in {asset.target.relative_to(ROOT)}")
            continue
        n = extract(asset, verified_tarball(asset))
        print(
            f"vendor_assets: {spec} verified, {n} files -> "
            f"{asset.target.relative_to(ROOT)}"
        )
    print(f"vendor_assets: done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
