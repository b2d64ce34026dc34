"""HTML: the page's main content as one document; tables as `col: value; col: value` rows.

As langchain-community's BSHTMLLoader: BeautifulSoup (here with lxml), the title from <title>, the
text from `get_text`. Unlike it, what is not content is dropped first (navigation, header, footer,
aside, scripts, styles, forms), <main> or <article> is preferred when the page has one, and tables
keep their rows. `html_documents` takes text, so a URL fetcher can call it with what it downloaded.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from retrievers.errors import UserInputError
from retrievers.formats.common import Draft, Origin, make_document, short_title, table_lines, tidy_lines
from retrievers.language import Language

if TYPE_CHECKING:
    from bs4 import BeautifulSoup, Tag

NOT_CONTENT = ("nav", "header", "footer", "aside", "script", "style", "noscript", "template", "form", "iframe", "svg")
_LANGUAGES: dict[str, Language] = {"ja": "ja", "en": "en"}
BLOCKS = (
    "p", "div", "section", "article", "main", "h1", "h2", "h3", "h4", "h5", "h6", "li", "dt", "dd",
    "pre", "blockquote", "figcaption", "caption", "address", "td", "th",
)  # fmt: skip


def html_file_documents(data: bytes, origin: Origin) -> list[Draft]:
    """A saved page: its encoding from the BOM, <meta charset> or a guess (Shift_JIS pages exist)."""
    from bs4 import UnicodeDammit

    decoded = UnicodeDammit(data, is_html=True).unicode_markup
    if decoded is None:
        raise UserInputError(f"{origin.name}: cannot tell the page's text encoding")
    return html_documents(decoded, source=origin.source, doc_id=origin.doc_id, origin=origin)


def html_documents(html: str, *, source: str, doc_id: str, origin: Origin | None = None) -> list[Draft]:
    """The page as one document's fields (a list: a fetcher may split a page later). `source`: where it came
    from (a file's path or a URL); `origin`: the file's name for messages, folder and config."""
    from bs4 import BeautifulSoup

    origin = replace(origin or Origin(name=source, doc_id=doc_id, source=source), source=source, doc_id=doc_id)
    soup = BeautifulSoup(html, "lxml")
    title = soup.title.get_text() if soup.title else ""
    content = _main_content(soup)
    text = tidy_lines(content.get_text()) if content is not None else ""
    if not text:
        raise UserInputError(f"{origin.name}: no text in the page's main content")
    declared = str(soup.html.get("lang") or "")[:2].lower() if soup.html else ""  # <html lang="ja-JP">
    heading = content.find(["h1", "h2"]) if content is not None else None
    doc = make_document(
        origin,
        text=text,
        title=short_title(title) or (short_title(heading.get_text()) if heading else ""),
        lang=_LANGUAGES.get(declared),
    )
    return [doc]


def _main_content(soup: BeautifulSoup) -> Tag | None:
    for tag in soup.find_all(NOT_CONTENT):
        # A <header> inside <main> or <article> holds that content's own heading: kept.
        if tag.name not in ("header", "footer") or tag.find_parent(["main", "article"]) is None:
            tag.decompose()
    for table in reversed(soup.find_all("table")):  # inner tables first: document order, reversed
        _table_as_rows(soup, table)
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(BLOCKS):  # a block starts a line; inline tags (<a>, <b>) do not
        block.insert_before("\n")
        block.insert_after("\n")
    return soup.find("main") or soup.find("article") or soup.body or soup


def _table_as_rows(soup: BeautifulSoup, table: Tag) -> None:
    rows = [
        [" ".join(cell.get_text(" ").split()) for cell in row.find_all(["th", "td"])] for row in table.find_all("tr")
    ]
    first = table.find("tr")
    has_header = first is not None and first.find("td") is None and first.find("th") is not None
    replacement = soup.new_tag("div")
    for line in table_lines(rows, has_header=has_header):
        paragraph = soup.new_tag("p")
        paragraph.string = line
        replacement.append(paragraph)
    table.replace_with(replacement)
