"""TTS text normalisation: phone numbers are read in digit groups with pauses."""

from __future__ import annotations

from graph.tts_text import speakable_text


def test_a_phone_number_is_read_digit_by_digit_in_groups() -> None:
    assert (
        speakable_text("お電話は03-1234-5678まで", "ja") == "お電話はゼロサン、イチニーサンヨン、ゴーロクナナハチまで"
    )
    assert speakable_text("Call 03-1234-5678.", "en") == ("Call zero three, one two three four, five six seven eight.")


def test_a_model_number_is_not_a_phone_number() -> None:
    assert speakable_text("KH-300", "en") == "KH-300"
