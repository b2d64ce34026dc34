"""Web pages as documents: `voicerag ingest https://...` for a page or a sitemap.

Pages are fetched through the product's HTTP layer (`ResilientHttp.request_page`: allow-list, https
rule, address guard, retries, breaker), read by the same HTML reader as a saved page
(`retrievers/formats/html.py`: main content only, tables as rows) and validated like any input, so a
web ingest is all-or-nothing too: a page that cannot be fetched or read stops it, naming the URL.

Only the hosts named on the command line are allowed: a sitemap that lists a page elsewhere is refused
(name that host's URL too, and it is allowed). A sitemap index is followed (up to `MAX_SITEMAP_DEPTH`);
at most `max_pages` pages are read (`MAX_PAGES` by default), fetched `CONCURRENCY` at a time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from retrievers.document_files import named
from retrievers.documents import Document, document_from_draft
from retrievers.errors import UserInputError
from retrievers.http.client import Page, ResilientHttp
from retrievers.turn.failures import FetchError

MAX_PAGES = 1000
MAX_SITEMAP_DEPTH = 3
CONCURRENCY = 4
_URL = re.compile(r"^https?://", re.IGNORECASE)
_SITEMAP_ROOTS = ("urlset", "sitemapindex")


def is_url(argument: str) -> bool:
    return bool(_URL.match(argument))


def allowed_hosts(urls: Sequence[str]) -> list[str]:
    """The hosts an ingest of `urls` may fetch from: theirs, and no other."""
    hosts = {urlsplit(url).hostname or "" for url in urls}
    return sorted(host for host in hosts if host)


async def web_documents(
    urls: Sequence[str],
    http: ResilientHttp,
    *,
    max_pages: int = MAX_PAGES,
    progress: Callable[[int, int], None] | None = None,
) -> list[Document]:
    """Every page named, or listed by a named sitemap, as a validated document (id: `web/<host><path>`).
    `progress(pages read, pages to read)`. Raises `UserInputError` naming the URL of the first problem."""
    pages: dict[str, Page | None] = {}  # ordered, without repeats; a page named is fetched once
    for url in urls:
        first = await _fetch(http, url)
        if (root := _sitemap_root(first)) is not None:
            for listed in await _sitemap_pages(http, first.url, root, depth=1):
                pages.setdefault(listed, None)
        else:
            pages[url] = first
    if len(pages) > max_pages:
        raise UserInputError(f"{named(urls[0])}: {len(pages)} pages listed, over the limit of {max_pages}")
    done = 0
    limit = asyncio.Semaphore(CONCURRENCY)

    async def read(url: str, fetched: Page | None) -> Document:
        nonlocal done
        async with limit:
            document = _document(url, fetched or await _fetch(http, url))
        done += 1
        if progress is not None:
            progress(done, len(pages))
        return document

    tasks = [asyncio.ensure_future(read(url, fetched)) for url, fetched in pages.items()]
    try:
        return list(await asyncio.gather(*tasks))
    finally:  # the first failure stops the rest: nothing is written anyway
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _fetch(http: ResilientHttp, url: str) -> Page:
    try:
        return await http.request_page(url)
    except FetchError as exc:
        raise UserInputError(f"{named(url)}: cannot fetch ({exc.kind}: {exc})") from None


def _sitemap_root(page: Page) -> Any | None:
    """The parsed sitemap (`urlset` or `sitemapindex`), or None when the page is not one."""
    from lxml import etree

    if page.media_type not in ("application/xml", "text/xml") and not page.url.lower().endswith(".xml"):
        return None
    try:
        root = etree.fromstring(page.body, parser=_xml_parser())
    except etree.XMLSyntaxError:
        return None
    return root if root is not None and etree.QName(root).localname in _SITEMAP_ROOTS else None


def _xml_parser() -> object:
    from lxml import etree

    # no entities, no network, no huge trees: a sitemap is data from outside
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


async def _sitemap_pages(http: ResilientHttp, sitemap_url: str, root: Any, *, depth: int) -> list[str]:
    """The page URLs of a sitemap; a sitemap index's sitemaps are read in turn."""
    from lxml import etree

    locations = [str(loc.text or "").strip() for loc in root.iter("{*}loc")]
    if not locations:
        raise UserInputError(f"{named(sitemap_url)}: the sitemap lists no pages")
    sitemap_host = urlsplit(sitemap_url).hostname
    for location in locations:
        if not is_url(location):
            raise UserInputError(f"{named(sitemap_url)}: {named(location)} is not an http(s) URL")
        if urlsplit(location).hostname != sitemap_host:
            raise UserInputError(
                f"{named(sitemap_url)}: lists {named(location)} on another host; name a URL of that host "
                "on the command line to allow it"
            )
    if etree.QName(root).localname == "urlset":
        return locations
    if depth >= MAX_SITEMAP_DEPTH:
        raise UserInputError(f"{named(sitemap_url)}: sitemap indexes nested deeper than {MAX_SITEMAP_DEPTH}")
    pages: list[str] = []
    for location in locations:
        nested = await _fetch(http, location)
        if (nested_root := _sitemap_root(nested)) is None:
            raise UserInputError(f"{named(location)}: listed as a sitemap, but not one")
        pages.extend(await _sitemap_pages(http, nested.url, nested_root, depth=depth + 1))
    return pages


def _document(url: str, page: Page) -> Document:
    from retrievers.formats.html import html_documents

    if page.media_type not in ("text/html", "application/xhtml+xml"):
        raise UserInputError(f"{named(url)}: {page.media_type or 'no content type'}, not an HTML page")
    html = _decoded(page)
    (draft,) = html_documents(html, source=url, doc_id=page_id(url))
    return document_from_draft(draft, named(url))


def _decoded(page: Page) -> str:
    from bs4 import UnicodeDammit

    known = [page.charset] if page.charset else []
    text = UnicodeDammit(page.body, known_definite_encodings=known, is_html=True).unicode_markup
    if text is None:
        raise UserInputError(f"{named(page.url)}: cannot tell the page's text encoding")
    return text


def page_id(url: str) -> str:
    """A page's document id: `web/` + host + path (+ query), stable across ingests of the same URL."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") or ""
    return f"web/{parts.hostname}{path}" + (f"?{parts.query}" if parts.query else "")
