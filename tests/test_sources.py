"""Where a submitted URL may point: every IPv6 form of a private IPv4 address is refused, and the fetch
connects to the address that was checked (no second DNS lookup, so no rebinding window)."""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ops.hooks.errors import BadSource
from ops.hooks.sources import check_url, embedded_ipv4, fetch_url, pinned, refusal


@pytest.mark.parametrize("url, why", [
    ("http://[64:ff9b::a9fe:a9fe]/", "169.254.169.254, a link-local"),  # NAT64 of the metadata address
    ("http://[2002:7f00:1::]/", "127.0.0.1, a loopback"),  # 6to4
    ("http://[::127.0.0.1]/", "127.0.0.1, a loopback"),  # IPv4-compatible
    ("http://[::ffff:10.0.0.1]/", "private"),  # IPv4-mapped
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "private"),  # Teredo
    ("http://[64:ff9b:1::a]/", "local-use NAT64"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://[fe80::1]/", "link-local"),
])
def test_private_addresses_in_every_form_are_refused(url, why):
    with pytest.raises(BadSource, match=why):
        check_url(url, [])


def test_embedded_addresses_are_read_out():
    assert str(embedded_ipv4(ipaddress.ip_address("64:ff9b::808:808"))) == "8.8.8.8"
    assert str(embedded_ipv4(ipaddress.ip_address("2002:808:808::"))) == "8.8.8.8"
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1111")) is None
    assert refusal(ipaddress.ip_address("64:ff9b::808:808")) is None  # NAT64 of a public address is fine
    assert refusal(ipaddress.ip_address("8.8.8.8")) is None


def test_an_allow_listed_network_is_let_through():
    assert check_url("http://127.0.0.1:9/x", ["127.0.0.0/8"]) == ["127.0.0.1"]


def test_pinned_request_keeps_the_host_and_tls_name():
    url, headers, ext = pinned("https://videos.example:8443/a.mp4?x=1", ["93.184.216.34"])
    assert url == "https://93.184.216.34:8443/a.mp4?x=1"
    assert headers == {"Host": "videos.example:8443"} and ext == {"sni_hostname": "videos.example"}
    url, headers, ext = pinned("http://v6.example/a", ["2606:4700::1111"])
    assert url == "http://[2606:4700::1111]/a" and headers == {"Host": "v6.example"} and ext == {}


def test_fetch_connects_to_the_checked_address_not_a_second_lookup(tmp_path, monkeypatch):
    """The name answers 127.0.0.1 once, then an address that refuses connections (a rebinding attack would
    answer the internal target here); the fetch must use the first answer and send the original Host."""
    seen = {}

    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen["host"] = self.headers["Host"]
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"video")

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"] + ["192.0.2.1"] * 10)

    def fake(host, *a, **k):
        if host == "rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    try:
        n = fetch_url(f"http://rebind.test:{port}/clip.mp4", tmp_path / "got", allow=["127.0.0.0/8"],
                      max_bytes=1000, timeout_s=10)
    finally:
        server.shutdown()
    assert n == 5 and (tmp_path / "got").read_bytes() == b"video"
    assert seen["host"] == f"rebind.test:{port}"
