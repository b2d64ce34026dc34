"""The street part of an address: what places a caller's door, not their town.

- Japanese: the block number after a municipality (市区町村郡) and a town name in kanji or
  katakana: 渋谷区[神南1-2-3], 大阪市[北区梅田1丁目2番3号], 札幌市[中央区北1条西2丁目1-3]. The
  prefecture and city stay readable. Not covered: towns written in hiragana (みなとみらい), building
  names and room numbers, addresses with no municipality.
- English: a house number, one to three capitalised words and a street type (12 Main Street,
  1600 Pennsylvania Ave, Apt 4B). Not covered: addresses without a street type, or in lower case.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from retrievers.masking.findings import Finding, Kind
from retrievers.masking.numbers import DASHES

_BLOCK_STEP = rf"(?:丁目|番地|番|号|条[東西南北]?|線|[{DASHES}])"
_JA = re.compile(
    rf"(?<=[市区町村郡])[一-龥々〆ヶァ-ヴー]{{1,10}}?"
    rf"[0-9]{{1,4}}{_BLOCK_STEP}(?:[0-9]{{1,4}}{_BLOCK_STEP}?){{1,3}}(?![0-9日時分件店個台回年月])"  # not "区内3-4日"
)
_STREET_TYPES = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Way|Court|Ct|Place|Pl|Terrace|Parkway|Pkwy"
)
_EN = re.compile(
    rf"(?<![A-Za-z0-9,.-])[0-9]{{1,5}}[A-Za-z]?(?: [A-Z][A-Za-z'-]*){{1,3}} (?:{_STREET_TYPES})\b\.?"
    r"(?:,? (?:Apt\.?|Apartment|Suite|Unit|#) ?[A-Za-z0-9-]+)?"
)


def find_addresses(text: str) -> Iterator[Finding]:
    patterns = (_JA, _EN) if any(c in text for c in "市区町村郡") else (_EN,)
    for pattern in patterns:
        for match in pattern.finditer(text):
            yield Finding(*match.span(), Kind.ADDRESS)
