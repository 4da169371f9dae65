"""Printing data as data: item titles, ids and labels come from files a user (or an attacker) wrote.

A title such as ``Boxed set [/b] vol 1`` is not rich markup, ``[bold]`` must print as written, and ANSI /
OSC escapes (``\\x1b]8;;...``), bidi overrides (U+202E) or newlines in a title must not reach the terminal
raw, where they recolour, retitle, reorder or fake lines of output. :func:`printable` replaces every
control character by a visible escape; :func:`safe_text` also escapes rich markup, for ``console.print``
and rich table cells."""

from __future__ import annotations

import re

__all__ = ["printable", "safe_text"]

_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")  # what rich reads as a tag (rich.markup.RE_TAGS), with its backslashes
# C0 controls and DEL, C1 controls, the bidi embeddings/overrides/isolates and marks, line/paragraph separators
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(m: re.Match) -> str:
    c = m.group(0)
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def printable(value: object) -> str:
    """``str(value)`` with every control character (C0, DEL, C1, ESC, bidi controls U+202A-202E and
    U+2066-2069, LRM/RLM/ALM, U+2028/2029, newlines and tabs) replaced by a visible escape such as
    ``\\x1b``, ``\\n`` or ``\\u202e``. For plain ``print``; use :func:`safe_text` with rich."""
    return _CONTROL.sub(_visible, str(value))


def safe_text(value: object, limit: int | None = None) -> str:
    """:func:`printable`, cut to ``limit`` characters first (so a cut never splits an escape), with rich
    markup escaped: what ``console.print`` and rich table cells show is exactly the data.

    Unlike ``rich.markup.escape``, a trailing backslash is not doubled (rich would then print two); so do not
    put a markup tag right after the result (``f"[b]{safe_text(x)}[/b]"``): style data with ``rich.text.Text``."""
    text = str(value)
    if limit is not None:
        text = text[:limit]
    return _TAG.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", printable(text))
