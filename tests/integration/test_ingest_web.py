"""`voicerag ingest https://...`: a web page or a sitemap, fetched through the product's HTTP layer
from a local site (`CompanySite`, 127.0.0.1), read like a saved page (main content, tables as rows),
all-or-nothing: a page that cannot be fetched or read stops the ingest with nothing written.
The real console script in a subprocess, embedded Chroma, the fast offline model (`EMBEDDINGS=use`)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from fakes import office_files as office
from fakes.threaded import ThreadedServer
from ingest_driver import cli_env
from test_ingest_cli import one_error_line, read_collection, snapshot, tree_digest

from retrievers.web_pages import page_id

pytestmark = pytest.mark.integration

VOICERAG = str(Path(sys.executable).parent / "voicerag")


class CompanySite(ThreadedServer):
    """A support site: two pages, a sitemap, a sitemap index, and the ways a site goes wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    def routes(self, app: web.Application) -> None:
        @web.middleware
        async def record(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
            self.requests.append(request.path)
            return await handler(request)

        app.middlewares.append(record)
        html = {"/plans": office.html_page(), "/ja/shipping": office.japanese_html_page()}
        for path, page in html.items():
            app.router.add_get(path, _text(page, "text/html"))
        xml = {  # the site's own URLs are known once it listens: made per request
            "/sitemap.xml": lambda base: sitemap(base, "/plans", "/ja/shipping"),
            "/index.xml": lambda base: sitemap_index(f"{base}/sitemap.xml"),
            "/elsewhere.xml": lambda base: sitemap("http://localhost:9", "/plans"),
            "/broken.xml": lambda base: sitemap(base, "/plans", "/gone"),
        }
        for path, make in xml.items():
            app.router.add_get(path, _xml(make))
        app.router.add_get("/data.json", _text('{"plans": []}', "application/json"))
        app.router.add_get("/moved", _redirect("/plans"))


def _text(body: str, content_type: str) -> web.RequestHandler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body.encode(), content_type=content_type, charset="utf-8")

    return handler


def _xml(make: Callable[[str], str]) -> web.RequestHandler:
    async def handler(request: web.Request) -> web.Response:
        body = make(f"http://{request.host}")
        return web.Response(body=body.encode(), content_type="application/xml", charset="utf-8")

    return handler


def _redirect(to: str) -> web.RequestHandler:
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(to)

    return handler


def sitemap(base: str, *paths: str) -> str:
    urls = "".join(f"<url><loc>{base}{path}</loc></url>" for path in paths)
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'


def sitemap_index(*sitemaps: str) -> str:
    entries = "".join(f"<sitemap><loc>{url}</loc></sitemap>" for url in sitemaps)
    return (
        f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}'
        "</sitemapindex>"
    )


@pytest.fixture(scope="module")
def site() -> Iterator[CompanySite]:
    with CompanySite() as server:
        yield server


def voicerag(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(cwd / "data", EMBEDDINGS="use")
    return subprocess.run([VOICERAG, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def search(cwd: Path, query: str) -> list[str]:
    done = voicerag(cwd, "search", query, "--top-k", "2", "--json")
    assert done.returncode == 0, done.stderr
    return [hit["doc_id"] for hit in json.loads(done.stdout)["results"]]


def test_a_sitemap_index_ingests_every_page_it_lists(site: CompanySite, tmp_path: Path) -> None:
    done = voicerag(tmp_path, "ingest", f"{site.url}/index.xml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 added, 0 updated, 0 unchanged, 0 removed; ")

    state = snapshot(tmp_path / "data")
    assert state is not None
    plans, shipping = (page_id(f"{site.url}{path}") for path in ("/plans", "/ja/shipping"))
    assert sorted(state["docs"]) == sorted([plans, shipping])
    assert state["docs"][plans]["source"] == f"{site.url}/plans"
    assert (state["docs"][plans]["lang"], state["docs"][shipping]["lang"]) == ("en", "ja")
    assert search(tmp_path, "Which plan includes unlimited international calls?")[0] == plans
    assert search(tmp_path, "沖縄への配送は何日かかりますか")[0] == shipping

    again = voicerag(tmp_path, "ingest", f"{site.url}/sitemap.xml")  # the same pages: nothing to write
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("0 added, 0 updated, 2 unchanged, 0 removed; 0 chunks written")


def test_a_page_named_is_read_as_its_main_content(site: CompanySite, tmp_path: Path) -> None:
    done = voicerag(tmp_path, "ingest", f"{site.url}/moved", "--dry-run")  # a same-origin redirect is followed
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1 documents in 0 file(s) and 1 URL(s) are valid; nothing written (--dry-run)"
    assert not (tmp_path / "data" / "chroma").exists()

    done = voicerag(tmp_path, "ingest", f"{site.url}/plans")
    assert done.returncode == 0, done.stderr
    stored = read_collection(tmp_path / "data", documents=True)
    assert stored is not None
    text = "\n".join(stored["documents"])
    assert "Plan: Premium; Monthly price: 4,980 yen" in text  # the table row, with its header names
    assert "NAV-MENU-ITEM" not in text and "TRACKING-SCRIPT-42" not in text and "FOOTER-COPYRIGHT" not in text


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/broken.xml", "/gone: cannot fetch (bad_response: 127.0.0.1 answered 404)"),
        ("/elsewhere.xml", "/elsewhere.xml: lists http://localhost:9/plans on another host"),
        ("/data.json", "/data.json: application/json, not an HTML page"),
    ],
    ids=["missing-page", "other-host", "not-html"],
)
def test_a_bad_page_refuses_the_whole_ingest_and_writes_nothing(
    site: CompanySite, tmp_path: Path, path: str, message: str
) -> None:
    (tmp_path / "doc.md").write_text("# Returns\n\nReturns are accepted within 30 days.\n", encoding="utf-8")
    before = tree_digest(tmp_path / "data")
    done = voicerag(tmp_path, "ingest", "doc.md", f"{site.url}{path}")
    assert done.returncode == 2
    line = one_error_line(done)
    assert message in line and line.startswith(site.url), line
    assert tree_digest(tmp_path / "data") == before
