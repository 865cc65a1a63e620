"""Safe labels for RPC URLs: provider URLs carry API keys in the path, query or userinfo."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@lru_cache(maxsize=256)
def url_label(url: str) -> str:
    """``https://user:key@eth.example.com/v2/KEY?x=1`` -> ``https://eth.example.com:443``.

    The only form of a URL that may be logged, put in an exception or used as a metric label.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or "unknown"
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:  # e.g. a non-numeric port: say nothing about the URL
        return "invalid-url"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme or 'http'}://{host}:{port}"
