"""The pieces of the transport rules: which hosts are development hosts, which addresses are public."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from retrievers.errors import UserInputError
from retrievers.http.address_guard import InsecureHosts, NetworkPolicy, is_public
from retrievers.sources.config import load_sources_file


def test_development_hosts_parse_names_addresses_and_networks() -> None:
    hosts = InsecureHosts(" LocalHost., 127.0.0.1, ::1, [fe80::1], 10.0.0.0/8, dev.internal ")
    assert hosts.names == {"localhost", "dev.internal"}
    for host in ("localhost", "LOCALHOST", "dev.internal", "127.0.0.1", "[::1]", "fe80::1", "10.200.3.4"):
        assert hosts.allows_name(host), host
    for host in ("127.0.0.2", "api.internal", "internal", "::2", "11.0.0.1"):
        assert not hosts.allows_name(host), host
    assert hosts.allows_address(ipaddress.ip_address("::ffff:10.1.1.1"))  # IPv4-mapped: judged as IPv4
    assert InsecureHosts("").names == frozenset() and InsecureHosts("").networks == ()


@pytest.mark.parametrize("entry", ["http://localhost", "user@host", "a..b", "10.0.0.0/33x", "host name"])
def test_a_malformed_development_host_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="is not a host name, an IP address or a network"):
        InsecureHosts(entry)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd12::1", False),
        ("::ffff:192.168.0.1", False),
        ("::ffff:93.184.215.14", True),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_plain_schemes_need_a_development_host() -> None:
    policy = NetworkPolicy("localhost,127.0.0.1")
    assert policy.plain_refused("http", "localhost") is None
    assert policy.plain_refused("https", "api.example.com") is None
    assert policy.plain_refused("wss", "api.example.com") is None
    assert policy.plain_refused("HTTP", "api.example.com") == (
        "plain http:// to api.example.com is refused: use https://, or list the host in HTTP_INSECURE_HOSTS"
    )
    assert policy.plain_refused("ws", "10.0.0.1") == (
        "plain ws:// to 10.0.0.1 is refused: use wss://, or list the host in HTTP_INSECURE_HOSTS"
    )


SOURCES = """
rest:
  - name: parcel
    description: Parcel status.
    labels: {en: "parcel tracking", ja: "荷物追跡"}
    url: ${PARCEL_URL}/v1/parcels
    auth: {type: bearer, value: "${PARCEL_KEY}"}
    summary: {en: "Status: {status}.", ja: "状況: {status}"}
    keep: {status: status}
realtime:
  - name: status_feed
    description: Live status.
    labels: {en: "the status", ja: "状況"}
    url: ${FEED_URL}/v1/stream
"""


@pytest.mark.parametrize(
    ("parcel", "feed", "refusal"),
    [
        ("http://api.example.com", "wss://feed.example.com", "source 'parcel': url: plain http:// to api.example.com"),
        ("https://api.example.com", "ws://10.0.0.7:9000", "source 'status_feed': url: plain ws:// to 10.0.0.7"),
        ("http://127.0.0.1:8080", "ws://localhost:9000", None),  # development hosts
        ("https://api.example.com", "wss://feed.example.com", None),
    ],
)
def test_the_sources_file_refuses_plain_urls_to_other_hosts_at_load(
    tmp_path: Path, parcel: str, feed: str, refusal: str | None
) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(SOURCES, encoding="utf-8")
    environ = {"PARCEL_URL": parcel, "PARCEL_KEY": "k", "FEED_URL": feed}
    if refusal is None:
        loaded = load_sources_file(path, environ)
        assert [s.name for s in loaded.declarations.rest] == ["parcel"]
        return
    with pytest.raises(UserInputError) as caught:
        load_sources_file(path, environ)
    assert str(caught.value).startswith(f"{path}: {refusal} is refused: use ")
    assert str(caught.value).endswith("or list the host in HTTP_INSECURE_HOSTS")
    # The same file loads when the host is a development host.
    host = parcel.split("//")[1] if "api" in refusal else "10.0.0.7"
    assert load_sources_file(path, environ, insecure_hosts=["localhost", host]).declarations.realtime
