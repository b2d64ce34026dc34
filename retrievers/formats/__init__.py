"""Readers of office formats (PDF, HTML, DOCX, CSV, XLSX): bytes already read → Documents.

Each reader calls its parser directly (pdfminer.six, BeautifulSoup, docx2txt, csv, openpyxl), as
langchain-community's document loaders do, without depending on that package (being sunset). A file
a reader cannot use is a `UserInputError` naming it (and the page, sheet or row): nothing is written.
`retrievers/documents.py` imports these lazily: the parsers load only when such a file is ingested.
"""
