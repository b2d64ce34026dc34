"""Japanese rules: write what a Japanese voice reads well (円 after the number, 時/分, から), expand
Latin-letter units and abbreviations that would otherwise be spelled out or read in English."""

from __future__ import annotations

import re

from graph.tts_rules import Rule
from graph.tts_rules.shared import (
    CHAIN,
    DASHES,
    MODEL_NUMBER,
    NUM,
    PAIR,
    PHONE,
    REFERENCE,
    SHORT_MODEL,
    TILDES,
    digit_groups,
    is_postal_code,
    is_range,
    model_number,
    phone,
    reference,
    short_model,
    split_chain,
    valid_date,
)

_DIGITS = dict(
    zip("0123456789", ("ゼロ", "イチ", "ニー", "サン", "ヨン", "ゴー", "ロク", "ナナ", "ハチ", "キュー"), strict=True)
)
_RANGE = f"[{DASHES}{TILDES}]"
# Days as a duration have irregular readings (4日間: よっかかん, not よんにちかん).
_DAY_COUNTS = {
    1: "いちにち",
    2: "ふつか",
    3: "みっか",
    4: "よっか",
    5: "いつか",
    6: "むいか",
    7: "なのか",
    8: "ようか",
    9: "ここのか",
    10: "とおか",
    14: "じゅうよっか",
    20: "はつか",
    24: "にじゅうよっか",
}
_NUM = NUM

_UNITS = {
    "km/h": "キロメートル毎時",
    "kWh": "キロワットアワー",
    "mAh": "ミリアンペアアワー",
    "Wh": "ワットアワー",
    "km2": "平方キロメートル",
    "km²": "平方キロメートル",
    "m2": "平方メートル",
    "m²": "平方メートル",
    "km": "キロメートル",
    "kg": "キログラム",
    "mm": "ミリメートル",
    "cm": "センチメートル",
    "mg": "ミリグラム",
    "ml": "ミリリットル",
    "mL": "ミリリットル",
    "GB": "ギガバイト",
    "MB": "メガバイト",
    "TB": "テラバイト",
    "Hz": "ヘルツ",
    "kW": "キロワット",
    "m": "メートル",
    "g": "グラム",
    "L": "リットル",
    "W": "ワット",
    "V": "ボルト",
    "%": "パーセント",
    "％": "パーセント",
    "℃": "度",
    "°C": "度",
}
_UNIT = re.compile(
    rf"({_NUM})\s?({'|'.join(re.escape(unit) for unit in sorted(_UNITS, key=len, reverse=True))})(?![A-Za-z])"
)
_CURRENCY_WORDS = {"$": "ドル", "＄": "ドル", "€": "ユーロ", "£": "ポンド"}


def _clock(hour: str, minute: str | None) -> str:
    return f"{int(hour)}時" + (f"{int(minute)}分" if minute and int(minute) else "")


def _ampm(hour: str, minute: str | None, meridiem: str) -> str:
    return ("午前" if meridiem.lower().startswith("a") else "午後") + _clock(hour, minute)


def _chain(match: re.Match[str]) -> str:
    groups = split_chain(match.group(1))
    return digit_groups(groups, _DIGITS, "", "、") if is_postal_code(groups) else "の".join(groups)


def _weekdays(match: re.Match[str]) -> str:
    return f"{match[1]}{match[2] or '曜'}から{match[3]}{match[4] or '曜'}"


def _dollars(match: re.Match[str]) -> str:
    word = _CURRENCY_WORDS[match.group(1)]
    whole, cents = match.group(2), match.group(3)
    return f"{whole}{word}" + (f"{int(cents)}セント" if cents and word == "ドル" and int(cents) else "")


# Rules for text with a digit in it (most of them: skipped when there is none).
NUMBER_RULES: list[Rule] = [
    (PHONE, phone(_DIGITS, "", "、")),
    (REFERENCE, reference(_DIGITS, "", "、")),
    # 2026/4/2, 2026-04-02 -> 2026年4月2日 (the written form every Japanese voice reads as a date)
    (
        re.compile(r"(?<![\d/])(\d{4})[/\-.](\d{1,2})[/\-.](\d{1,2})(?![\d/])"),
        lambda m: f"{m[1]}年{int(m[2])}月{int(m[3])}日" if valid_date(m[2], m[3]) else m[0],
    ),
    # 4/2 -> 4月2日 (a bare slash is read "スラッシュ" or as a fraction)
    (
        re.compile(r"(?<![\d/.])(\d{1,2})/(\d{1,2})(?![\d/])"),
        lambda m: f"{int(m[1])}月{int(m[2])}日" if valid_date(m[1], m[2]) else m[0],
    ),
    # 9am–6pm, 9:30 a.m. -> 午前9時から午後6時
    (
        re.compile(
            rf"(\d{{1,2}})(?::(\d{{2}}))?\s?([ap])(?:\.m\.?|m)\s?{_RANGE}\s?(\d{{1,2}})(?::(\d{{2}}))?\s?([ap])(?:\.m\.?|m)",
            re.I,
        ),
        lambda m: f"{_ampm(m[1], m[2], m[3])}から{_ampm(m[4], m[5], m[6])}",
    ),
    (
        re.compile(r"(?<![\d:])(\d{1,2})(?::(\d{2}))?\s?([ap])(?:\.m\.?|m)(?![A-Za-z])", re.I),
        lambda m: _ampm(m[1], m[2], m[3]),
    ),
    # 10:00〜19:00 -> 10時から19時; 10:30 -> 10時30分
    (
        re.compile(rf"(?<![\d:])([01]?\d|2[0-4]):([0-5]\d)\s?{_RANGE}\s?([01]?\d|2[0-4]):([0-5]\d)(?![\d:])"),
        lambda m: f"{_clock(m[1], m[2])}から{_clock(m[3], m[4])}",
    ),
    (re.compile(r"(?<![\d:])([01]?\d|2[0-4]):([0-5]\d)(?![\d:])"), lambda m: _clock(m[1], m[2])),
    # ¥1,650 -> 1,650円 (the sign is read before the number otherwise: "円1650")
    (re.compile(rf"[¥￥]\s?({_NUM})"), r"\1円"),
    (re.compile(rf"({_NUM})\s?JPY(?![A-Za-z])"), r"\1円"),
    (re.compile(r"([$＄€£])\s?((?:\d{1,3}(?:,\d{3})+|\d+))(?:\.(\d{2}))?"), _dollars),
    # 100km/h -> 時速100キロメートル (the way it is said)
    (re.compile(rf"({_NUM})\s?km/h\b"), r"時速\1キロメートル"),
    (_UNIT, lambda m: f"{m[1]}{_UNITS[m[2]]}"),
    # 〒100-0001 -> 郵便番号 イチゼロゼロ、ゼロゼロゼロイチ (a postal code is digits, not a range)
    (
        re.compile(r"〒\s?(\d{3})[-－](\d{4})"),
        lambda m: "郵便番号 " + "、".join("".join(_DIGITS[d] for d in g) for g in m.groups()),
    ),
    # 3〜5日, 3-5営業日, 1,000円〜2,000円 -> 3から5日: a tilde or dash before a number is a range
    (PAIR, lambda m: f"{m[1]}{m[2]}から{m[4]}{m[5]}" if is_range(m) else m[0]),
    # 2-14-5 (an address) -> 2の14の5; 141-0031 (a postal code) -> digits
    (CHAIN, _chain),
    (re.compile(rf"(?<=[\d円日月年時分秒個台人件回本枚名%％度])\s?[{TILDES}]\s?(?=[\d¥￥$])"), "から"),
    (MODEL_NUMBER, model_number),
    (SHORT_MODEL, short_model),
    # 2F -> 2階 (a floor; "2F" is read letter by letter)
    (re.compile(r"(?<![\dA-Za-z])(\d{1,2})F(?![A-Za-z])"), r"\1階"),
    # 1ヶ月 -> 1か月: "ヶ" is read as the katakana ケ by some voices
    (re.compile(r"(\d)\s?[ヶヵカケ](月|所|国)"), r"\1か\2"),
    # 4日間 -> よっか間, 40日間 -> 40にち間 (misread by Azure's Japanese voice)
    (re.compile(r"(?<![\d,.])(\d{1,3})日間"), lambda m: _DAY_COUNTS.get(int(m[1]), f"{int(m[1])}にち") + "間"),
]

# Rules for words and signs, applied to every sentence.
WORD_RULES: list[Rule] = [
    # 月〜金 -> 月曜から金曜; 土日祝 -> 土曜、日曜、祝日
    (
        re.compile(
            rf"(?<![0-9\u4e00-\u9fff])([月火水木金土日])(曜日?)?\s?[{TILDES}{DASHES}]\s?([月火水木金土日])(曜日?)?"
        ),
        _weekdays,
    ),
    (re.compile(r"土日祝(?:日)?"), "土曜、日曜、祝日"),
    (re.compile(r"\b(?:TEL|Tel|tel)(?![A-Za-z])[.:：]?\s?"), "電話 "),
    (re.compile(r"\b(?:FAX|Fax)(?![A-Za-z])[.:：]?\s?"), "ファックス "),
    (re.compile(r"※\s?"), ""),
    (re.compile(r"\s?&\s?"), "アンド"),
]
