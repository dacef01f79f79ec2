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
from urllib.parse import urlsplit, urlunsplit

from ops.hooks.errors import BadSource, TooLarge

MAX_REDIRECTS = 5


def _networks(allow: list[str]) -> list[ipaddress._BaseNetwork]:
    return [ipaddress.ip_network(c, strict=False) for c in allow]


# IPv6 prefixes that carry an IPv4 address in their low 32 bits and reach it through a translator or a
# tunnel. Python 3.11's ``ipaddress`` calls most of them global, so a URL such as
# http://[64:ff9b::a9fe:a9fe]/ (NAT64 of 169.254.169.254) would pass a plain ``is_global`` test.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local-use translation, never public
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated "IPv4-compatible" ::a.b.c.d


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, Teredo, IPv4-compatible), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address; the server's is public by construction
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64:
        return low
    if ip in _V4_COMPATIBLE and int(ip) > 1:  # not :: and not ::1
        return low
    return None


def _kind(ip: ipaddress._BaseAddress) -> str:
    return ("unspecified" if ip.is_unspecified else "loopback" if ip.is_loopback
            else "link-local" if ip.is_link_local else "multicast" if ip.is_multicast
            else "private" if ip.is_private else "reserved")


def refusal(ip: ipaddress._BaseAddress) -> str | None:
    """Why a connection to ``ip`` is refused (e.g. 'a loopback address'), or None when it is public."""
    if ip.version == 6:
        if ip in _NAT64_LOCAL:
            return "a local-use NAT64 (64:ff9b:1::/48) address"
        inner = embedded_ipv4(ip)
        if inner is not None and (why := refusal(inner)):
            return f"an IPv6 form of {inner}, {why}"
    if not ip.is_global or ip.is_multicast or ip.is_unspecified:
        return f"a{'n' if _kind(ip)[0] in 'aeiou' else ''} {_kind(ip)} address"
    return None


def check_url(url: str, allow: list[str], *, allow_private: bool = False) -> list[str]:
    """The addresses ``url``'s host resolves to, all of them acceptable; BadSource otherwise.

    Connect to one of these (:func:`pinned`), not to the name again: a second lookup could
    answer differently (DNS rebinding).
    """
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
    except (socket.gaierror, UnicodeError) as e:
        raise BadSource(f"url host {host!r} does not resolve ({getattr(e, 'strerror', None) or e})") from None
    addrs = sorted({i[4][0].split("%")[0] for i in infos})
    nets = _networks(allow)
    for a in addrs:
        ip = ipaddress.ip_address(a)
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if allow_private or any(ip in n for n in nets):
            continue
        why = refusal(ip)
        if why:
            raise BadSource(f"url host {host!r} resolves to {ip}, {why}; refused "
                            "(allow-list its network in api.url_allow if this is intended)")
    return addrs


def pinned(url: str, addrs: list[str]) -> tuple[str, dict[str, str], dict[str, str]]:
    """``url`` rewritten to connect to the checked address ``addrs[0]``: (url, headers, httpx extensions).

    The Host header and, for https, the TLS server name (SNI and certificate check) stay the
    original host's, so the server sees the request it would have seen.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    ip = ipaddress.ip_address(addrs[0])
    netloc = f"[{ip}]" if ip.version == 6 else str(ip)
    if parts.port:
        netloc += f":{parts.port}"
    host_header = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": host_header}, extensions


def fetch_url(url: str, dest: Path, *, allow: list[str], max_bytes: int, timeout_s: float,
              allow_private: bool = False) -> int:
    """Download to ``dest`` (atomically), re-checking every hop; returns the byte count."""
    import httpx

    deadline = time.monotonic() + timeout_s
    tmp = dest.with_name(dest.name + ".part")
    with httpx.Client(follow_redirects=False, timeout=httpx.Timeout(min(timeout_s, 30.0))) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            target, headers, extensions = pinned(url, check_url(url, allow, allow_private=allow_private))
            try:
                with client.stream("GET", target, headers={"User-Agent": "sludge-ingest/0.1", **headers},
                                   extensions=extensions) as resp:
                    if resp.is_redirect:
                        url = str(httpx.URL(url).join(resp.headers.get("location", "")))
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
