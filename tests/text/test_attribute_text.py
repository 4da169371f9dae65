"""ReaEmb item text: "attribute is value; ..." rendering and the attribute-dropout views."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from semcollab.text.attribute_text import (
    attribute_texts,
    attribute_views,
    item_attribute_texts,
    split_attributes,
)


def test_fields_in_order_with_readable_names_and_missing_cells_skipped():
    items = pd.DataFrame({"title": ["Lip Gloss", float("nan"), "nan", None],
                          "brand": ["", "OPI", "  ", pd.NA],
                          "categories": ["Beauty > Makeup", "Beauty", "None", "<NA>"]})
    texts = attribute_texts(items, ["title", "brand", "categories"])
    assert texts == ["title is Lip Gloss; category is Beauty > Makeup",
                     "brand is OPI; category is Beauty",
                     "",
                     ""]
    assert not any("nan" in t.lower() or "none" in t.lower() for t in texts)
    # the given field order is kept, and names can be overridden (Yelp's title is the business name)
    assert attribute_texts(items.iloc[:1], ["categories", "title"], names={"title": "name"}) == [
        "category is Beauty > Makeup; name is Lip Gloss"]


def test_values_are_cut_and_cannot_break_the_separator():
    items = pd.DataFrame({"title": ["x" * 150], "description": ["first; second\nline"]})
    (text,) = attribute_texts(items, ["title", "description"], max_chars=100)
    assert text == "title is " + "x" * 100 + "; description is first, second line"
    assert len(split_attributes(text)) == 2
    (short,) = attribute_texts(items, ["description"], max_chars=5)
    assert short == "description is first"  # cut to 5 characters ("first"), trailing space stripped


def test_unknown_field_is_an_error_and_split_helper_drops_padding_row():
    items = pd.DataFrame({"item": ["[PAD]", "a", "b"], "title": ["", "Red Shoe", "Blue Hat"],
                          "categories": ["", "Shoes", float("nan")]})
    with pytest.raises(KeyError, match="brand"):
        attribute_texts(items, ["title", "brand"])
    split = SimpleNamespace(items=items, text_fields=["title", "categories"])
    assert item_attribute_texts(split) == ["title is Red Shoe; category is Shoes", "title is Blue Hat"]


TEXT = "title is A; category is B; brand is C; price is D; store is E"


def test_views_drop_40_percent_and_keep_at_least_one():
    parts = set(split_attributes(TEXT))
    for seed in range(20):
        for view in attribute_views(TEXT, 0.4, seed):
            got = split_attributes(view)
            assert len(got) == 5 - int(5 * 0.4) == 3 and set(got) <= parts and len(set(got)) == 3
    two = "title is A; category is B"
    assert all(len(split_attributes(v)) == 2 for v in attribute_views(two, 0.4, 0))  # floor(0.8) = 0 dropped
    assert all(len(split_attributes(v)) == 1 for v in attribute_views(two, 0.9, 0))  # at least one is kept
    assert attribute_views("title is A", 0.4, 0) == ["title is A", "title is A"]
    assert attribute_views("", 0.4, 0) == ["", ""]


def test_views_are_deterministic_for_a_seed_and_distinct():
    assert attribute_views(TEXT, 0.4, 7) == attribute_views(TEXT, 0.4, 7)
    assert len({tuple(attribute_views(TEXT, 0.4, s)) for s in range(10)}) > 1
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert [attribute_views(TEXT, 0.4, rng_a) for _ in range(3)] == [attribute_views(TEXT, 0.4, rng_b) for _ in range(3)]
    assert all(len(set(attribute_views(TEXT, 0.4, s))) == 2 for s in range(20))
    with pytest.raises(ValueError, match="drop"):
        attribute_views(TEXT, 1.0, 0)
