"""GraphiQL served from our own origin, so dashboards work with no internet.

The JS/CSS come from npm (`graphiql`, `react`, `react-dom`, `graphql-ws`, `@graphiql/plugin-explorer` in
package.json) and are copied by the setup step into server/static/graphiql/ (git-ignored):

    npm ci --ignore-scripts --no-audit --no-fund
    python -m server.graphiql install

The page references only `/static/...` on the same origin: no CDN, no web fonts (GraphiQL's CSS inlines
its fonts as data: URLs), no source-map comments. Config (endpoints, the ready-made tabs of
server/graphiql_operations.py, whether the explorer plugin is on) goes into a JSON block read by
server/static/graphiql-init.js, so the page needs no inline script. That script adds the sign-in bar (password or
API key; the token in memory, renewed before expiry; localStorage only for a remembered refresh token) and the
graphql-transport-ws client that authenticates in connection_init.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template

from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from server.graphiql_operations import FIRST_MARKET, NOW, READY_OPERATIONS

log = logging.getLogger(__name__)

# The one localStorage entry the page may write: the refresh token, and only when the user ticks "Remember me".
REMEMBER_KEY = "stablerwa.graphiql.refreshToken"

STATIC_URL = "/static"
STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSET_DIR = STATIC_DIR / "graphiql"
TEMPLATE = STATIC_DIR / "graphiql.html"
NODE_MODULES = Path(__file__).resolve().parents[1] / "node_modules"
SETUP_COMMAND = "npm ci --ignore-scripts --no-audit --no-fund && python -m server.graphiql install"

# What the page may load and do: its scripts and styles from this origin only (no inline script: the config is a
# JSON block), inline styles (the page's <style> block; GraphiQL and CodeMirror set style attributes), GraphiQL's
# inlined data: fonts and images, requests (HTTP and graphql-transport-ws) to this origin only; and it must never
# be framed (clickjacking a signed-in dashboard): CSP frame-ancestors plus X-Frame-Options for older browsers.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY", "Cache-Control": "no-store"}

# The first tab is a blank one for the explorer to fill; then the ready-made dashboard operations, each titled with
# the role that may run it (server/graphiql_operations.py). Credentials come from the sign-in bar, not the editors.
EXPLORER_TAB = {"query": "# Tick fields in the Explorer on the left to build a query here, then press Run.\n"}
EXAMPLE_TABS: tuple[dict[str, str], ...] = (EXPLORER_TAB, *(op.tab() for op in READY_OPERATIONS))


@dataclass(frozen=True)
class Asset:
    package: str  # npm package name under node_modules/
    source: str  # path inside the package
    target: str  # file name under ASSET_DIR
    slot: str  # names the asset in tests and in the manifest
    feature: str = "core"  # "explorer": only on pages with the explorer plugin


ASSETS: tuple[Asset, ...] = (
    Asset("react", "umd/react.production.min.js", "react.production.min.js", "react_js"),
    Asset("react-dom", "umd/react-dom.production.min.js", "react-dom.production.min.js", "react_dom_js"),
    Asset("graphiql", "graphiql.min.js", "graphiql.min.js", "graphiql_js"),
    Asset("graphiql", "graphiql.min.css", "graphiql.min.css", "graphiql_css"),
    # the subscription client the page drives itself (auth in connection_init, restarted when the token changes)
    Asset("graphql-ws", "umd/graphql-ws.min.js", "graphql-ws.min.js", "graphql_ws_js"),
    # GraphiQL's own explorer plugin (3.2.x pairs with graphiql 3.9 / @graphiql/react 0.29); no eval, no fetches
    Asset("@graphiql/plugin-explorer", "dist/index.umd.js", "plugin-explorer.umd.js", "explorer_js", "explorer"),
    Asset("@graphiql/plugin-explorer", "dist/style.css", "plugin-explorer.css", "explorer_css", "explorer"),
)

# `//# sourceMappingURL=...` (JS) and `/*# sourceMappingURL=... */` (CSS): the maps are not shipped,
# and a dangling reference makes devtools fetch a 404.
_SOURCE_MAP = re.compile(rb"\n?(//[#@] sourceMappingURL=[^\n]*|/\*[#@] sourceMappingURL=[^*]*\*/)\s*$")


class AssetsNotInstalled(RuntimeError):
    """The npm packages GraphiQL needs are missing from node_modules or from server/static/graphiql/."""


def _package_version(node_modules: Path, package: str) -> str:
    manifest = node_modules / package / "package.json"
    if not manifest.is_file():
        raise AssetsNotInstalled(f"{manifest} not found: run `npm ci --ignore-scripts --no-audit --no-fund` first")
    return str(json.loads(manifest.read_text())["version"])


def install_assets(node_modules: Path = NODE_MODULES, dest: Path = ASSET_DIR) -> dict[str, dict[str, str]]:
    """Copy GraphiQL's browser bundles from node_modules into `dest`; returns the manifest written."""
    manifest: dict[str, dict[str, str]] = {}
    dest.mkdir(parents=True, exist_ok=True)
    for asset in ASSETS:
        version = _package_version(node_modules, asset.package)
        src = node_modules / asset.package / asset.source
        if not src.is_file():
            raise AssetsNotInstalled(f"{src} not found in {asset.package}@{version}")
        data = _SOURCE_MAP.sub(b"\n", src.read_bytes())
        (dest / asset.target).write_bytes(data)
        manifest[asset.target] = {
            "package": asset.package,
            "version": version,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for name in ("LICENSE", "LICENSE.md"):
            licence = node_modules / asset.package / name
            if licence.is_file():
                (dest / f"{asset.package.replace('/', '__')}.LICENSE").write_bytes(licence.read_bytes())
                break
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def missing_assets(dest: Path | None = None) -> list[str]:
    """Asset files the page needs that are not installed (empty when GraphiQL can be served)."""
    dest = ASSET_DIR if dest is None else dest
    return [a.target for a in ASSETS if not (dest / a.target).is_file()]


def _asset_tags(dest: Path, explorer: bool) -> dict[str, str]:
    """The page's <link> and <script> tags, in ASSETS order (scripts depend on the ones before them)."""
    # The version in the query string busts browser caches when package.json moves to a new release.
    try:
        manifest = json.loads((dest / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    styles, scripts = [], []
    for asset in ASSETS:
        if asset.feature == "explorer" and not explorer:
            continue
        version = manifest.get(asset.target, {}).get("version", "0")
        url = html.escape(f"{STATIC_URL}/graphiql/{asset.target}?v={version}")
        if asset.target.endswith(".css"):
            styles.append(f'<link rel="stylesheet" href="{url}" />')
        else:
            scripts.append(f'<script src="{url}"></script>')
    return {"styles": "\n    ".join(styles), "scripts": "\n    ".join(scripts)}


def _content_version(path: Path) -> str:
    # our own script changes with the code, not with a package version: its URL carries a digest of its bytes
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _json_for_script(value: object) -> str:
    # Inside <script type="application/json"> only "</" could end the block; escape every "<".
    return json.dumps(value).replace("<", "\\u003c")


def _not_installed_page(missing: list[str]) -> str:
    message = (
        "GraphiQL assets are not installed (missing: " + ", ".join(missing) + "). "
        f"Run the setup command: {SETUP_COMMAND}"
    )
    log.error(message)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>GraphiQL unavailable</title></head>'
        f'<body><h1>GraphiQL unavailable</h1><p id="graphiql-error">{html.escape(message)}</p>'
        "<p>The GraphQL endpoint itself still accepts POST requests.</p></body></html>"
    )


def graphiql_html(
    endpoint: str = "/graphql", subscription_endpoint: str | None = "/graphql", explorer: bool = True
) -> str:
    """The GraphiQL page; every URL in it is on the serving origin. An explanatory page if assets are missing.

    `explorer` (settings.graphiql_explorer: GRAPHIQL_EXPLORER, on outside production) adds the explorer plugin,
    open when the page loads."""
    missing = missing_assets()
    if missing:
        return _not_installed_page(missing)
    config = {
        "endpoint": endpoint,
        "subscriptionEndpoint": subscription_endpoint,
        "explorer": explorer,
        "tabs": list(EXAMPLE_TABS),
        "placeholders": {"now": NOW, "firstMarket": FIRST_MARKET},
        "rememberKey": REMEMBER_KEY,
        "setupCommand": SETUP_COMMAND,
    }
    return Template(TEMPLATE.read_text()).substitute(
        config=_json_for_script(config),
        init_js=f"{STATIC_URL}/graphiql-init.js?v={_content_version(STATIC_DIR / 'graphiql-init.js')}",
        **_asset_tags(ASSET_DIR, explorer),
    )


def graphiql_response(endpoint: str = "/graphql") -> HTMLResponse:
    """For Strawberry's `render_graphql_ide` override: 200 with the page, or 503 with setup instructions."""
    status = 503 if missing_assets() else 200
    return HTMLResponse(graphiql_html(endpoint), status_code=status, headers=PAGE_HEADERS)


def static_mount() -> Mount:
    """Serves server/static/ (init script and the installed GraphiQL bundles) at /static."""
    return Mount(STATIC_URL, app=StaticFiles(directory=STATIC_DIR), name="static")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.graphiql", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help="copy GraphiQL assets from node_modules into server/static/graphiql/")
    install.add_argument("--node-modules", type=Path, default=NODE_MODULES)
    install.add_argument("--dest", type=Path, default=ASSET_DIR)
    args = parser.parse_args(argv)
    try:
        manifest = install_assets(args.node_modules, args.dest)
    except AssetsNotInstalled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for target, info in manifest.items():
        print(f"{target}: {info['package']}@{info['version']}")
    print(f"installed into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
