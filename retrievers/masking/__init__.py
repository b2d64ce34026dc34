"""Masking: sensitive values a caller says, replaced by typed placeholders in what the product keeps.

`mask(text)` replaces each value found with `[PHONE]`, `[EMAIL]`, `[CARD]`, `[MY_NUMBER]`,
`[POSTAL_CODE]`, `[BANK_ACCOUNT]`, `[BIRTH_DATE]`, `[SECRET]`, `[ID_NUMBER]` or `[ADDRESS]`;
`find(text)` says what and where (for tests and the evaluation); `mask_value(obj)` masks every
string of a JSON-like record (dicts, lists, tuples) at any depth.

Masking applies only to what is kept or sent away: the per-turn log line, the audit log, error
messages, traces, and the question sent to a cloud chat model when `MASK_FOR_LLM=true`. It never
applies to what the product uses to answer: the parcel-tracking source reads `1234-5678-9012` from
the question as it was said, the database reads the order number.

Japanese and English, full-width forms included: recognisers read an NFKC view of the text
(`view.py`) and the original text's span is masked. Pure Python, no model, nothing downloaded;
check digits (Luhn, My Number, JAN/EAN) come from python-stdnum. What each recogniser covers and
what it leaves is said in its module: `numbers.py` (phone, card, My Number, postal code, bank
account), `emails.py`, `phrases.py` (birth dates, secrets, identity documents), `addresses.py`.
Not covered: personal names, and anything said in words rather than written as characters.
"""

from retrievers.masking.findings import Finding, Kind
from retrievers.masking.masker import find, mask, mask_value

__all__ = ["Finding", "Kind", "find", "mask", "mask_value"]
