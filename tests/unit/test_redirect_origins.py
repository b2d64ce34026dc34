"""The redirect rule on its own: a redirect may not change origin (scheme, host, port).

`tests/integration/test_http_redirects.py` proves it against real servers; these cases pin the
edges of the rule (default ports, the http → https upgrade, Locations httpx resolves oddly).
"""

from __future__ import annotations

import httpx
import pytest

from retrievers.http.transport import redirect_target, refuse_cross_origin_redirect
from retrievers.turn.failures import FetchError


def redirect(source: str, location: str, status: int = 302) -> httpx.Response:
    return httpx.Response(status, headers={"Location": location}, request=httpx.Request("GET", source))


@pytest.mark.parametrize(
    ("source", "location"),
    [
        ("http://127.0.0.1:8000/a", "/b"),
        ("http://127.0.0.1:8000/a", "http://127.0.0.1:8000/b?x=1"),
        ("https://api.example.com/a", "https://API.example.com:443/b"),  # explicit default port
        ("http://api.example.com/a", "https://api.example.com/b"),  # httpx's upgrade: 80 → 443
        ("https://api.example.com/a", "https:/b"),  # no host: httpx keeps the host
        ("http://[::1]:8000/a", "http://[::1]:8000/b"),
    ],
)
async def test_same_origin_redirects_are_followed(source: str, location: str) -> None:
    await refuse_cross_origin_redirect(redirect(source, location))


@pytest.mark.parametrize(
    ("source", "location", "named"),
    [
        ("http://127.0.0.1:8000/a", "http://127.0.0.1:8001/b", "http://127.0.0.1:8001"),  # the case
        ("https://api.example.com/a", "https://api.example.com:8443/b", "https://api.example.com:8443"),
        ("https://api.example.com/a", "http://api.example.com/b", "http://api.example.com"),  # downgrade
        ("http://api.example.com:8080/a", "https://api.example.com:8443/b", "https://api.example.com:8443"),
        ("http://api.example.com/a", "https://api.example.com:8443/b", "https://api.example.com:8443"),
        ("https://a.example.com/a", "https://b.example.com/b", "https://b.example.com"),
        ("https://a.example.com/a", "//169.254.169.254/latest", "https://169.254.169.254"),
        ("http://[::1]:8000/a", "http://[::1]:8001/b", "http://[::1]:8001"),
    ],
)
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_that_change_origin_are_refused_naming_both_origins(
    source: str, location: str, named: str, status: int
) -> None:
    with pytest.raises(FetchError) as caught:
        await refuse_cross_origin_redirect(redirect(source, location, status))
    assert caught.value.kind == "forbidden_host" and caught.value.status == status
    assert str(caught.value).endswith(f"to another origin, {named}")


async def test_the_refusal_never_quotes_the_location_path_or_query() -> None:
    with pytest.raises(FetchError) as caught:
        await refuse_cross_origin_redirect(redirect("http://h:1/a?key=SECRET", "http://h:2/b?key=SECRET"))
    assert str(caught.value) == "refused a redirect from http://h:1 to another origin, http://h:2"


async def test_an_invalid_location_is_a_bad_response() -> None:
    with pytest.raises(FetchError) as caught:
        await refuse_cross_origin_redirect(redirect("http://h:1/a", "http://\x01/x"))
    assert caught.value.kind == "bad_response"


def test_the_target_is_resolved_as_httpx_resolves_it() -> None:
    client = httpx.Client()
    for location in ("/b", "b?x=1", "https:/b", "//other:9/b", "http://h:2/b#f"):
        response = redirect("http://h:1/dir/a#frag", location)
        expected = client._redirect_url(response.request, response)  # httpx's own resolution
        assert redirect_target(response).copy_with(fragment=None) == expected.copy_with(fragment=None)


async def test_non_redirects_pass() -> None:
    await refuse_cross_origin_redirect(httpx.Response(200, request=httpx.Request("GET", "http://h:1/")))
    await refuse_cross_origin_redirect(httpx.Response(304, request=httpx.Request("GET", "http://h:1/")))
