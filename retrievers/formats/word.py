"""DOCX: one document per file, text by docx2txt (as langchain-community's Docx2txtLoader does).

docx2txt reads a table cell by cell, each cell a paragraph, which loses which value belongs to which
column. So each table in `word/document.xml` is first rewritten, in memory, as one paragraph per row
(`col: value; col: value`, the first row naming the columns) and docx2txt reads that copy.
"""

from __future__ import annotations

import io
import zipfile

from lxml import etree

from retrievers.errors import UserInputError
from retrievers.formats.common import Draft, Origin, make_document, opened_zip, short_title, table_lines

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_BODY = "word/document.xml"


def docx_document(data: bytes, origin: Origin) -> Draft:
    import docx2txt

    try:
        text = docx2txt.process(io.BytesIO(_tables_as_rows(data, origin.name)))
    except UserInputError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, etree.XMLSyntaxError) as exc:
        raise UserInputError(f"{origin.name}: not a readable DOCX file ({_reason(exc)})") from None
    text = "\n\n".join(part.strip() for part in text.split("\n\n") if part.strip())  # docx2txt pads with blank lines
    if not text:
        raise UserInputError(f"{origin.name}: no text in the document")
    return make_document(origin, text=text, title=short_title(text))


def _tables_as_rows(data: bytes, name: str) -> bytes:
    """A copy of the DOCX whose tables are paragraphs, one a row."""
    source = opened_zip(data, name, "DOCX")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    body = etree.fromstring(source.read(_BODY), parser)
    tables = body.iter(f"{{{_W}}}tbl")
    outermost = [table for table in tables if not any(a.tag == f"{{{_W}}}tbl" for a in table.iterancestors())]
    for table in outermost:
        rows = [
            [" ".join("".join(cell.itertext()).split()) for cell in row.iterchildren(f"{{{_W}}}tc")]
            for row in table.iterchildren(f"{{{_W}}}tr")
        ]
        parent = table.getparent()
        if parent is None:
            continue
        at = parent.index(table)
        parent.remove(table)
        for offset, line in enumerate(table_lines(rows, has_header=len(rows) > 1)):
            parent.insert(at + offset, _paragraph(line))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as copy:
        for info in source.infolist():
            content = etree.tostring(body) if info.filename == _BODY else source.read(info)
            copy.writestr(info.filename, content)
    return out.getvalue()


def _paragraph(text: str) -> etree._Element:
    paragraph = etree.Element(f"{{{_W}}}p")
    run = etree.SubElement(paragraph, f"{{{_W}}}r")
    etree.SubElement(run, f"{{{_W}}}t").text = text
    return paragraph


def _reason(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]
