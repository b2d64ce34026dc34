"""Test doubles that behave like the real services they replace (tests only)."""
