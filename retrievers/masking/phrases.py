"""Values named by the words before them: dates of birth, secrets (PINs, passwords, security and
one-time codes) and identity-document numbers. A date or a code alone is not sensitive ("2026年4月2日",
"KH-300"); after 生年月日, 暗証番号, password, 免許証... it is."""

from __future__ import annotations

import re
from collections.abc import Iterator

from retrievers.masking.context import alternation, lowered
from retrievers.masking.findings import Finding, Kind

_MONTHS = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)(?![a-z])\.?"
)
_DATE = re.compile(
    r"(?<![A-Za-z0-9])(?:"  # an era letter is capital: S60 is Shōwa 60, "is 12" is not
    r"(?:(?:明治|大正|昭和|平成|令和|(?-i:[MTSHR])) ?(?:[0-9]{1,2}|元)|[0-9]{4}) ?年 ?[0-9]{1,2} ?月 ?[0-9]{1,2} ?日"
    r"|(?:(?-i:[MTSHR]) ?[0-9]{1,2}|[0-9]{4})[-/.][0-9]{1,2}[-/.][0-9]{1,2}(?![0-9])"
    r"|[0-9]{1,2}[-/.][0-9]{1,2}[-/.](?:[0-9]{4}|[0-9]{2})(?![0-9])"
    rf"|{_MONTHS} [0-9]{{1,2}}(?:st|nd|rd|th)?,? [0-9]{{4}}"
    rf"|[0-9]{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTHS},? [0-9]{{4}}"
    # without the year ("誕生日は7月24日", "born on July 24th"): still the caller's, after a word about birth
    rf"|[0-9]{{1,2}} ?月 ?[0-9]{{1,2}} ?日|{_MONTHS} [0-9]{{1,2}}(?:st|nd|rd|th)?(?![0-9])"
    rf"|[0-9]{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTHS}(?! ?[0-9]))",
    re.IGNORECASE,
)
_BIRTH_WORDS = ("生年月日", "誕生日", "生まれ", "date of birth", "birth date", "birthdate", "birthday", "born", "DOB")
_BIRTH_BEFORE = re.compile(alternation(_BIRTH_WORDS), re.IGNORECASE)
_BIRTH_HINTS = ("生", "うまれ", "birth", "born", "dob")  # one of them is in any text with a birth word
_BIRTH_AFTER = re.compile(r"^ ?(?:生まれ|生|うまれ)")
BIRTH_CONTEXT = 24  # characters before a date searched for a word about birth

_SECRET_WORDS = (
    "暗証番号", "パスワード", "パスコード", "セキュリティコード", "セキュリティーコード", "認証コード", "確認コード",
    "ワンタイムパスワード", "PIN", "PIN code", "PIN number", "password", "passcode", "pass code",
    "security code", "CVV", "CVV2", "CVC", "verification code", "one-time code", "one-time password", "OTP",
)  # fmt: skip
_ID_WORDS = (
    "運転免許証", "免許証", "パスポート", "旅券", "保険証", "被保険者番号", "基礎年金番号", "年金番号", "在留カード",
    "passport", "driver's license", "driving licence", "driver license", "license number", "licence number",
    "social security number", "SSN", "insurance number", "residence card",
)  # fmt: skip
# Between the word and its value: "は", "is", ":", "の番号は", " number is", " on the back is"...
_FILLER = (
    r"[ :：=]*(?:の?番号|number|no\.?|code)?[ ]?(?:(?:on|of|for|from|in) (?:the |my |your )?[a-z]+)?"
    r"[ :：=]*(?P<link>は|が|is|was|:|：|=)?[ :：=]*第?"  # 第123456789012号: how a licence number is written
)
_VALUE = r"(?P<value>[A-Za-z0-9][A-Za-z0-9!#$%&*+_.@-]*(?: [0-9]+)*)"  # "1234 5678 9012" is one value
_NAMED = re.compile(
    rf"(?:(?P<secret>{alternation(_SECRET_WORDS)})|(?P<id>{alternation(_ID_WORDS)})){_FILLER}{_VALUE}", re.IGNORECASE
)

_HINTS = tuple(word.lower() for word in (*_SECRET_WORDS, *_ID_WORDS))


def find_birth_dates(text: str) -> Iterator[Finding]:
    low = lowered(text)
    if not any(hint in low for hint in _BIRTH_HINTS):
        return
    for match in _DATE.finditer(text):
        start, end = match.span()
        if _BIRTH_BEFORE.search(text, max(0, start - BIRTH_CONTEXT), start) or _BIRTH_AFTER.match(text[end : end + 4]):
            yield Finding(start, end, Kind.BIRTH_DATE)


def find_named_values(text: str) -> Iterator[Finding]:
    low = lowered(text)
    if not any(word in low for word in _HINTS):  # the regex is the slow part: most texts name nothing
        return
    for match in _NAMED.finditer(text):
        value = match.group("value").rstrip(".")
        # A value with no digit is a word, not a code ("my password is wrong"), unless clearly given
        # ("パスワードは", "password: ...").
        if not value or not (any(c.isdigit() for c in value) or match.group("link") in ("は", ":", "：", "=")):
            continue
        start = match.start("value")
        yield Finding(start, start + len(value), Kind.SECRET if match.group("secret") else Kind.ID_NUMBER)
