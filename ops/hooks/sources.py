"""Where a submitted video may come from: an upload, a URL, or a path under an ingest root.

URLs are a server-side request forgery risk: the service would fetch whatever
address a caller names. Only http and https are accepted, and every address
the host name resolves to must be public unless it falls inside an allow-listed
network; the check runs again at fetch time and on every redirect (a name can
resolve differently later). Paths must resolve, links followed, inside one of
the configured roots.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from ops.hooks.errors import BadSource, TooLarge

MAX_REDIRECTS = 5


def _networks(allow: list[str]) -> list[ipaddress._BaseNetwork]:
    return [ipaddress.ip_network(c, strict=False) for c in allow]


def check_url(url: str, allow: list[str], *, allow_private: bool = False) -> list[str]:
    """The addresses ``url``'s host resolves to, all of them acceptable; BadSource otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BadSource(f"url scheme {parts.scheme or '(none)'!r} is not allowed: only http and https")
    host = parts.hostname
    if not host:
        raise BadSource(f"url {url!r} has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadSource(f"url {url!r} has an invalid port") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise BadSource(f"url host {host!r} does not resolve ({e.strerror})") from None
    addrs = sorted({i[4][0] for i in infos})
    nets = _networks(allow)
    for a in addrs:
        ip = ipaddress.ip_address(a.split("%")[0])
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if allow_private or any(ip in n for n in nets):
            continue
        if not ip.is_global or ip.is_multicast:
            kind = ("loopback" if ip.is_loopback else "link-local" if ip.is_link_local
                    else "private" if ip.is_private else "reserved")
            raise BadSource(f"url host {host!r} resolves to {ip}, a {kind} address; refused "
                            "(allow-list its network in api.url_allow if this is intended)")
    return addrs


def fetch_url(url: str, dest: Path, *, allow: list[str], max_bytes: int, timeout_s: float,
              allow_private: bool = False) -> int:
    """Download to ``dest`` (atomically), re-checking every hop; returns the byte count."""
    import httpx

    deadline = time.monotonic() + timeout_s
    tmp = dest.with_name(dest.name + ".part")
    with httpx.Client(follow_redirects=False, timeout=httpx.Timeout(min(timeout_s, 30.0))) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            check_url(url, allow, allow_private=allow_private)
            try:
                with client.stream("GET", url, headers={"User-Agent": "sludge-ingest/0.1"}) as resp:
                    if resp.is_redirect:
                        url = str(resp.url.join(resp.headers.get("location", "")))
                        continue
                    if resp.status_code != 200:
                        raise BadSource(f"fetching {url}: HTTP {resp.status_code}")
                    declared = int(resp.headers.get("content-length") or 0)
                    if declared > max_bytes:
                        raise TooLarge(f"{url} is {declared} bytes; the limit is {max_bytes}")
                    n = 0
                    with open(tmp, "wb") as f:
                        for chunk in resp.iter_bytes(1 << 16):
                            n += len(chunk)
                            if n > max_bytes:
                                raise TooLarge(f"{url} is larger than the limit of {max_bytes} bytes")
                            if time.monotonic() > deadline:
                                raise BadSource(f"fetching {url} took longer than {timeout_s:g} s")
                            f.write(chunk)
                    os.replace(tmp, dest)
                    return n
            except httpx.HTTPError as e:
                raise BadSource(f"fetching {url}: {e.__class__.__name__}: {e}") from None
            finally:
                tmp.unlink(missing_ok=True)
    raise BadSource(f"fetching {url}: more than {MAX_REDIRECTS} redirects")


def check_path(path: str, roots: list[Path]) -> Path:
    """The resolved file when it lies inside an ingest root (links followed); BadSource otherwise."""
    if not roots:
        raise BadSource("path ingest is off: no api.ingest_roots are configured")
    if not path or "\x00" in path:
        raise BadSource("path is empty or contains a NUL byte")
    p = Path(path)
    if not p.is_absolute():
        raise BadSource(f"path {path!r} must be absolute")
    try:
        real = p.resolve(strict=True)
    except (OSError, RuntimeError):
        raise BadSource(f"path {path!r} does not exist or cannot be resolved") from None
    if not any(real.is_relative_to(r.resolve()) for r in roots):
        raise BadSource(f"path {path!r} is outside the ingest roots")
    if not real.is_file():
        raise BadSource(f"path {path!r} is not a regular file")
    return real
