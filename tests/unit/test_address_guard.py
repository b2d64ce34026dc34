"""The pieces of the transport rules: which hosts are development hosts, which addresses are public."""

from __future__ import annotations

import ipaddress

import pytest

from retrievers.http.address_guard import InsecureHosts, NetworkPolicy, is_public


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
