"""Input rules for identity fields; violations are BAD_USER_INPUT with the offending field named."""

from __future__ import annotations

import re

from core.errors import BadUserInput

_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
MIN_PASSWORD = 10
MAX_PASSWORD = 128


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise BadUserInput("invalid email address", field="email")
    return email


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadUserInput(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters", field="password")
    if password.isdigit() or password.isalpha():
        raise BadUserInput("password must mix letters with digits or symbols", field="password")
