"""Item text templates: how an item's metadata becomes the string a language model reads.

A template is a Python format string over the item table's columns, e.g. ``"{title} ({year})"``, with
one addition: **optional segments** in square brackets. A segment ``[...]`` is dropped, whole, when any
field named inside it is empty for the item, so ::

    "{title}[. Brand: {brand}][. Category: {categories}]"

gives ``"Lipstick. Brand: Maybelline. Category: Beauty > Makeup"``, or ``"Lipstick. Category: Beauty >
Makeup"`` for an item without a brand, or ``""`` for an item with nothing at all. A segment naming no
field is always kept. Segments do not nest; an unclosed ``[`` or a stray ``]`` is an error.

* Literal brackets are written doubled: ``[[`` gives ``[`` and ``]]`` gives ``]`` (like ``{{``/``}}`` for
  braces), read left to right; inside a ``{field}`` (a format spec or index) brackets are not special.
* *Empty* means: a missing value (None, NaN, pd.NA/NaT), a blank string, or the strings ``"nan"``,
  ``"NaN"``, ``"None"``, ``"<NA>"``, ``"NaT"`` (what ``str()`` of a missing value gives). Empty values
  render as ``""``, never as ``"nan"``. The same rule decides which fields the default
  ``"field: value; ..."`` join (no template) skips.
* Runs of whitespace in the result are collapsed to one space and the ends are stripped.
* A template naming a column the item table lacks, or a positional field ``{}``/``{0}``, is a
  :class:`TemplateError` (a ``KeyError`` and a ``ValueError``), as is a malformed template."""

from __future__ import annotations

import math
import string

import pandas as pd

from ..errors import TemplateError  # noqa: F401  (defined in errors.py)

EMPTY_STRINGS = frozenset({"", "nan", "NaN", "None", "<NA>", "NaT"})
_LEADING_SEPARATORS = " \t\n.,;:|-"



def clean_value(value) -> str:
    """An item-table cell as text, ``""`` for every kind of missing value (see the module docstring)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    text = str(value)
    return "" if text.strip() in EMPTY_STRINGS else text


def _split_segments(template: str) -> list[tuple[bool, str]]:
    """``template`` as ``(optional, format_string)`` pieces; ``[[``/``]]`` become literal brackets."""
    pieces: list[tuple[bool, str]] = []
    buf: list[str] = []
    optional, opened_at = False, -1
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        if ch == "{":
            if template.startswith("{{", i):
                buf.append("{{")
                i += 2
                continue
            depth, j = 0, i  # copy the whole replacement field (nested {..} in its format spec included)
            while j < n:
                if template[j] == "{":
                    depth += 1
                elif template[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if j >= n:
                raise TemplateError(f"text template {template!r}: '{{' at position {i} is never closed by '}}'")
            buf.append(template[i:j + 1])
            i = j + 1
            continue
        if ch == "}":
            if template.startswith("}}", i):
                buf.append("}}")
                i += 2
                continue
            raise TemplateError(f"text template {template!r}: single '}}' at position {i}; write '}}}}' for a "
                                "literal brace")
        if ch in "[]" and template.startswith(ch * 2, i):
            buf.append(ch)
            i += 2
            continue
        if ch == "[":
            if optional:
                raise TemplateError(f"text template {template!r}: '[' at position {i} opens a segment inside the "
                                    f"optional segment opened at position {opened_at}; optional segments cannot "
                                    "be nested (write '[[' for a literal '[')")
            if buf:
                pieces.append((False, "".join(buf)))
            buf, optional, opened_at = [], True, i
        elif ch == "]":
            if not optional:
                raise TemplateError(f"text template {template!r}: ']' at position {i} closes no optional segment "
                                    "(write ']]' for a literal ']')")
            pieces.append((True, "".join(buf)))
            buf, optional = [], False
        else:
            buf.append(ch)
        i += 1
    if optional:
        raise TemplateError(f"text template {template!r}: the optional segment opened by '[' at position "
                            f"{opened_at} is never closed by ']' (write '[[' for a literal '[')")
    if buf:
        pieces.append((False, "".join(buf)))
    return pieces


def _field_names(template: str, piece: str) -> list[str]:
    """The item columns ``piece`` refers to (``{title.upper}``/``{title[0]}`` refer to ``title``)."""
    try:
        parsed = list(string.Formatter().parse(piece))
    except ValueError as exc:
        raise TemplateError(f"text template {template!r}: {exc}") from None
    names = []
    for _, fname, spec, _ in parsed:
        if fname is None:
            continue
        root = fname.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise TemplateError(f"text template {template!r}: positional field {{{fname}}}; name a column, "
                                "e.g. {title}")
        names.append(root)
        if spec and "{" in spec:
            names += _field_names(template, spec)
    return names


def parse_template(template: str) -> list[tuple[bool, str, list[str]]]:
    """``(optional, format_string, field_names)`` per piece of ``template``; TemplateError when malformed."""
    return [(opt, piece, _field_names(template, piece)) for opt, piece in _split_segments(template)]


def template_fields(template: str) -> list[str]:
    """The item columns ``template`` names, in first-use order."""
    return list(dict.fromkeys(n for _, _, names in parse_template(template) for n in names))


def render_item_texts(items: pd.DataFrame, fields: list[str], template: str | None = None) -> list[str]:
    """One text per real item (rows 1..N of ``items``; row 0 is padding).

    ``template``: see the module docstring (format string over the item columns, ``[...]`` segments
    dropped when a field in them is empty). Without one, every non-empty field of ``fields`` is written
    as ``"field: value"`` joined with ``"; "`` (fields the table lacks are skipped)."""
    rows = items.iloc[1:]
    if template is None:
        present = [f for f in fields if f in items.columns]
        cols = {f: [clean_value(v) for v in rows[f].tolist()] for f in present}
        return ["; ".join(f"{f}: {cols[f][k]}" for f in present if cols[f][k].strip()) for k in range(len(rows))]
    pieces = parse_template(template)
    names = list(dict.fromkeys(n for _, _, ns in pieces for n in ns))
    missing = [n for n in names if n not in items.columns]
    if missing:
        raise TemplateError(f"text template {template!r} uses column(s) {missing} that the item table lacks; "
                            f"it has {list(items.columns)}")
    cols = {f: [clean_value(v) for v in rows[f].tolist()] for f in names}
    out = []
    for k in range(len(rows)):
        values = {f: cols[f][k] for f in names}
        parts = []
        for optional, piece, pnames in pieces:
            if optional and any(not values[f].strip() for f in pnames):
                continue
            try:
                text = piece.format_map(values)
            except (ValueError, TypeError, IndexError, AttributeError, KeyError) as exc:
                who = f"item {items['item'].iloc[k + 1]!r}" if "item" in items.columns else f"item row {k + 1}"
                raise TemplateError(f"text template {template!r} cannot render {who}: "
                                    f"{type(exc).__name__}: {exc}") from None
            if optional and not "".join(parts).strip():
                text = text.lstrip(_LEADING_SEPARATORS)  # "{title}[. Brand: {brand}]" without a title
            parts.append(text)
        out.append(" ".join("".join(parts).split()))
    return out
