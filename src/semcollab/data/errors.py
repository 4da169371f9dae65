"""Errors raised for bad input data.

Every message names the file (or frame), the column and, where one exists, the first offending row,
so a user can fix the source instead of guessing."""

from __future__ import annotations


class DataError(ValueError):
    """Raised when input data is malformed: missing columns, NaNs, bad ids, empty histories, ..."""


class UnknownIdError(KeyError):
    """Raised when a raw user or item id that was never seen in training is asked for at inference."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""
