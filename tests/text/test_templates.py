"""Item text templates: optional ``[...]`` segments, escapes, empty values, errors; the dataset default."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from semcollab.text.templates import TemplateError, clean_value, render_item_texts, template_fields

AMAZON = "{title}[. Brand: {brand}][. Category: {categories}]"


def _items(**cols):
    n = len(next(iter(cols.values())))
    return pd.DataFrame({"item": ["[PAD]"] + [str(i) for i in range(1, n + 1)],
                         **{k: [""] + list(v) for k, v in cols.items()}})


def test_optional_segments_dropped_when_a_field_is_empty():
    items = _items(title=["Lip Gloss", "Nail Polish", "", "", ""],
                   brand=["Maybelline", "", "OPI", "", ""],
                   categories=["Beauty > Makeup", "Beauty > Nails", "", "Beauty", ""])
    assert render_item_texts(items, [], AMAZON) == [
        "Lip Gloss. Brand: Maybelline. Category: Beauty > Makeup",
        "Nail Polish. Category: Beauty > Nails",
        "Brand: OPI",  # no title: the first kept segment loses its leading ". "
        "Category: Beauty",
        "",  # an all-empty item
    ]


def test_segment_with_two_fields_needs_both_and_literal_segment_is_kept():
    items = _items(city=["Paris", "Rome", ""], country=["France", "", ""])
    assert render_item_texts(items, [], "Shop[ in {city}, {country}][ (open)]") == [
        "Shop in Paris, France (open)", "Shop (open)", "Shop (open)"]


def test_nan_none_and_missing_values_count_as_empty_everywhere():
    items = pd.DataFrame({"item": ["[PAD]", "1", "2", "3", "4"],
                          "title": ["", "A", "B", "C", "D"],
                          "brand": [None, "nan", np.nan, "None", pd.NA],
                          "year": ["", "NaN", "<NA>", "  ", "1999"]})
    assert render_item_texts(items, [], "{title}[ by {brand}][ ({year})]") == ["A", "B", "C", "D (1999)"]
    # without the brackets the value renders as '' (never 'nan'/'None')
    assert render_item_texts(items, [], "{title} by {brand}") == ["A by", "B by", "C by", "D by"]
    # the default "field: value" join skips them too
    assert render_item_texts(items, ["title", "brand", "year"]) == ["title: A", "title: B", "title: C",
                                                                    "title: D; year: 1999"]
    assert [clean_value(v) for v in (None, float("nan"), "nan", "None", " x ", 3)] == ["", "", "", "", " x ", "3"]


def test_escaped_brackets_and_braces_and_format_specs():
    items = _items(title=["Toy Story", ""], year=["1995", "1996"])
    assert render_item_texts(items, [], "[[{title}]] {{{year}}}[ [[{title}]]]") == [
        "[Toy Story] {1995} [Toy Story]", "[] {1996}"]
    assert render_item_texts(items, [], "{year:>6}|[{title:.3}]") == ["1995|Toy", "1996|"]
    assert template_fields(AMAZON) == ["title", "brand", "categories"]


def test_whitespace_collapsed():
    items = _items(title=["  A  \n B "], brand=["X"])
    assert render_item_texts(items, [], "  {title}   [ - {brand} ]  ") == ["A B - X"]


def test_unknown_field_is_an_error_naming_it():
    items = _items(title=["A"])
    with pytest.raises(TemplateError, match=r"\['brand'\].*lacks") as exc:
        render_item_texts(items, [], "{title}[. Brand: {brand}]")
    assert isinstance(exc.value, KeyError) and isinstance(exc.value, ValueError)
    assert str(exc.value).startswith("text template")  # not wrapped in quotes like a plain KeyError


@pytest.mark.parametrize("template, message", [
    ("{title}[. Brand: {brand}", r"opened by '\[' at position 7 is never closed"),
    ("{title}]", r"'\]' at position 7 closes no optional segment"),
    ("[a [b {title}]]", r"'\[' at position 3 opens a segment inside the optional segment opened at position 0; "
                        r"optional segments cannot be nested"),
    ("[x][[{title}]", r"'\]' at position 12 closes no optional segment"),  # '[[' is always a literal '['

    ("{title", r"never closed by '\}'"),
    ("{title} }", r"single '\}' at position 8"),
    ("{} and {0}", r"positional field \{\}"),
])
def test_malformed_templates_are_clear_errors(template, message):
    with pytest.raises(TemplateError, match=message):
        render_item_texts(_items(title=["A"]), [], template)


# ---------------------------------------------------------------------------------- the dataset default
def _split(tmp_path, default_template):
    from semcollab.data import RawDataset, prepare

    inter = pd.DataFrame({"user": ["u1"] * 3 + ["u2"] * 3, "item": ["1", "2", "3", "2", "3", "1"],
                          "timestamp": [1, 2, 3, 1, 2, 3]})
    items = pd.DataFrame({"item": ["1", "2", "3"], "title": ["Lip Gloss", "", "Mascara"],
                          "brand": ["Maybelline", "OPI", ""]})
    return prepare(RawDataset("t", inter, items, ["title", "brand"], default_template=default_template),
                   user_k=1, item_k=1)


def test_split_render_texts_uses_the_dataset_default(tmp_path):
    sp = _split(tmp_path, "{title}[ by {brand}]")
    assert sp.render_texts() == ["Lip Gloss by Maybelline", "by OPI", "Mascara"]
    assert sp.render_texts("{brand}") == ["Maybelline", "OPI", ""]
    # explicit fields without a template: the "field: value" join over them
    assert sp.render_texts(fields=["brand"]) == ["brand: Maybelline", "brand: OPI", ""]
    assert sp.item_texts() == ["title: Lip Gloss; brand: Maybelline", "brand: OPI", "title: Mascara"]
    plain = _split(tmp_path, None)
    assert plain.render_texts() == plain.item_texts()
    assert sp.stats["items_without_text"] == 0


class _FakeModel(torch.nn.Module):
    """Scores item i as i; enough for explain_recommendations' plain (non-intent) path."""

    max_len = None
    cfg = None

    def score(self, users, seqs):
        return torch.arange(4, dtype=torch.float32)[None].repeat(len(users), 1)


def test_explain_recommendations_shows_the_default_template_texts(tmp_path):
    from semcollab.methods.saerec.explain import explain_recommendations

    sp = _split(tmp_path, "{title}[ by {brand}]")
    out = explain_recommendations(_FakeModel(), sp, "u1", k=3, stage="valid")
    assert out["history"] == ["Lip Gloss by Maybelline"]
    assert [r["text"] for r in out["recommendations"]] == ["Mascara", "by OPI"]


def test_item_embeddings_embed_the_default_template_texts(tmp_path, tiny_bert):
    from semcollab.text import EmbedConfig, item_embeddings

    sp = _split(tmp_path, "{title}[ by {brand}]")
    cfg = EmbedConfig(encoder=str(tiny_bert), cache_dir=str(tmp_path / "e"), device="cpu")
    vecs, stats = item_embeddings(sp, cfg, out_dir=tmp_path / "out")
    rows = [json.loads(x) for x in (tmp_path / "out" / "item_texts.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["Lip Gloss by Maybelline", "by OPI", "Mascara"]
    assert vecs.shape[0] == 4 and stats["empty_texts"] == 0
    cfg.template = "{brand}"
    item_embeddings(sp, cfg, out_dir=tmp_path / "out2")
    rows = [json.loads(x) for x in (tmp_path / "out2" / "item_texts.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["Maybelline", "OPI", ""]
