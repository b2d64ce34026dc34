"""What the masker finds: a kind of sensitive value and where it is."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """The kinds of sensitive value recognised; each is masked as `[KIND]`."""

    PHONE = "PHONE"
    EMAIL = "EMAIL"
    CARD = "CARD"
    MY_NUMBER = "MY_NUMBER"
    POSTAL_CODE = "POSTAL_CODE"
    BANK_ACCOUNT = "BANK_ACCOUNT"
    BIRTH_DATE = "BIRTH_DATE"
    SECRET = "SECRET"  # PINs, passwords, card security codes, one-time codes
    ID_NUMBER = "ID_NUMBER"  # driving licence, passport, health insurance, pension numbers
    ADDRESS = "ADDRESS"  # the street part: Japanese block numbers, "12 Main Street"

    @property
    def placeholder(self) -> str:
        return f"[{self.value}]"


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """A sensitive value at `text[start:end]` (offsets in the text that was searched)."""

    start: int
    end: int
    kind: Kind
