"""S3-Rec item text from ``<name>_items.csv``, default templates, and their way through prepare and the cache."""

import json

import pytest

from semcollab.config import DataConfig
from semcollab.data import DataError, load_s3rec, load_split, prepare
from semcollab.data.cache import load_split_cache, save_split

HEADER = "item_id,source_id,title,brand,categories,attributes,keywords\n"


def _write(tmp_path, name="Beauty", csv=None, attrs=True):
    (tmp_path / f"{name}.txt").write_text("1 5 6 7\n2 6 7 8 9\n3 5 7 9\n")
    if attrs:
        (tmp_path / f"{name}_item2attributes.json").write_text(json.dumps({"5": [1, 2], "6": [3], "9": []}))
    if csv is not None:
        (tmp_path / f"{name}_items.csv").write_text(csv)
    return tmp_path / f"{name}.txt"


CSV = (HEADER
       + '5,B001,"Lip Gloss, Pink",Maybelline,Beauty > Makeup,"Maybelline, Makeup",lip gloss pink\n'
       + "6,B002,Nail Polish,,Beauty > Nails,,nail polish\n"
       + "7,B003,,OPI,,,\n"
       + "8,B004,,,,,\n"
       + "42,B042,Not In Sequences,X,Y,Z,w\n")  # item 9 is missing, item 42 is extra


def test_csv_gives_text_fields_default_template_and_counts(tmp_path):
    raw = load_s3rec(_write(tmp_path, csv=CSV), "Beauty")
    assert raw.text_fields == ["title", "brand", "categories", "attributes", "keywords"]
    assert raw.default_template == "{title}[. Brand: {brand}][. Category: {categories}]"
    assert [p.name for p in raw.sources] == ["Beauty.txt", "Beauty_items.csv", "Beauty_item2attributes.json"]
    it = raw.items.set_index("item")
    assert list(it.index) == ["5", "6", "7", "8", "9"]  # the extra CSV row (42) is ignored
    assert it.loc["5", "source_id"] == "B001" and it.loc["5", "title"] == "Lip Gloss, Pink"
    assert it.loc["6", "brand"] == "" and it.loc["9", "title"] == ""  # empty cells / missing rows: ''
    assert "nan" not in it.drop(columns="attribute_ids").to_numpy().ravel().tolist()
    assert it.loc["5", "attribute_ids"] == "a1 a2" and it.loc["9", "attribute_ids"] == ""
    assert raw.stats == {"items_not_in_item_file": 1, "items_without_text": 2}  # 8 (all cells empty) and 9
    sp = prepare(raw, user_k=1, item_k=1)
    texts = dict(zip(sp.item_vocab.ids, sp.render_texts()))
    assert texts == {"5": "Lip Gloss, Pink. Brand: Maybelline. Category: Beauty > Makeup",
                     "6": "Nail Polish. Category: Beauty > Nails", "7": "Brand: OPI", "8": "", "9": ""}
    assert sp.stats["items_without_text"] == 2 and sp.stats["items_not_in_item_file"] == 1
    # the old attribute-id input, byte for byte, and the ids alone
    old = dict(zip(sp.item_vocab.ids, sp.render_texts("attributes: attributes {attribute_ids}")))
    assert old["5"] == "attributes: attributes a1 a2" and old["9"] == "attributes: attributes"
    assert sp.render_texts("{attribute_ids}")[0] == "a1 a2"


@pytest.mark.parametrize("name, expected", [
    ("Beauty", "{title}[. Brand: {brand}][. Category: {categories}]"),
    ("Toys_and_Games", "{title}[. Brand: {brand}][. Category: {categories}]"),
    ("Sports_and_Outdoors", "{attributes}[. Keywords: {keywords}]"),
    ("Yelp", "{title}[. Categories: {categories}]"),
    ("Other", None),
])
def test_default_template_per_dataset(tmp_path, name, expected):
    raw = load_s3rec(_write(tmp_path, name, csv=CSV, attrs=False), name)
    assert raw.default_template == expected
    assert "attribute_ids" not in raw.items.columns


def test_sports_default_renders_attributes_and_keywords(tmp_path):
    csv = HEADER + "5,S1,,,,\"Ghost, Hunting\",ghost punch\n6,S2,,,,Tipton,\n"
    sp = prepare(load_s3rec(_write(tmp_path, "Sports_and_Outdoors", csv=csv), "Sports_and_Outdoors"),
                 user_k=1, item_k=1)
    texts = dict(zip(sp.item_vocab.ids, sp.render_texts()))
    assert texts["5"] == "Ghost, Hunting. Keywords: ghost punch" and texts["6"] == "Tipton" and texts["7"] == ""


def test_without_csv_or_attributes(tmp_path):
    raw = load_s3rec(_write(tmp_path, "Plain", attrs=False), "Plain")
    assert raw.text_fields == [] and raw.default_template is None and list(raw.items.columns) == ["item"]


def test_csv_is_part_of_the_cache_key_and_default_template_survives_the_cache(tmp_path):
    (tmp_path / "d").mkdir()
    path = _write(tmp_path / "d", csv=CSV)
    cfg = DataConfig(name="s3rec:Beauty", path=str(path), cache_dir=str(tmp_path / "c"), user_k=1, item_k=1)
    a = load_split(cfg)
    b = load_split(cfg)
    assert len(list((tmp_path / "c" / "prepared").iterdir())) == 1
    assert b.default_template == a.default_template == "{title}[. Brand: {brand}][. Category: {categories}]"
    assert b.render_texts() == a.render_texts() and b.fingerprint() == a.fingerprint()
    assert b.stats == a.stats
    (tmp_path / "d" / "Beauty_items.csv").write_text(CSV.replace("Nail Polish", "Nail Lacquer"))
    c = load_split(cfg)
    assert len(list((tmp_path / "c" / "prepared").iterdir())) == 2
    assert "Nail Lacquer. Category: Beauty > Nails" in c.render_texts()


def test_fingerprint_includes_default_template(tmp_path):
    sp = prepare(load_s3rec(_write(tmp_path, csv=CSV), "Beauty"), user_k=1, item_k=1)
    fp = sp.fingerprint()
    sp.default_template = "{title}"
    assert sp.fingerprint() != fp
    sp.default_template = None  # None adds nothing: fingerprints of splits without a default are unchanged
    fp_none = sp.fingerprint()
    save_split(sp, tmp_path / "entry")
    back = load_split_cache(tmp_path / "entry")
    assert back.default_template is None and back.fingerprint() == fp_none


@pytest.mark.parametrize("content, message", [
    ("id,title\n5,A\n", r"Beauty_items\.csv: missing column\(s\) \['item_id'\]"),
    (HEADER + "5,B1,A,,,,\n6,B2,B,,,,\n5,B3,C,,,,\n", r"Beauty_items\.csv: column 'item_id' repeats item id '5': "
                                                       r"data rows 0 and 2 \(file lines 2 and 4\)"),
    (HEADER + ",B1,A,,,,\n", r"Beauty_items\.csv: column 'item_id' has 1 empty id\(s\); first at row 0"),
    ("item_id,title,title\n5,A,B\n", r"Beauty_items\.csv: the header names column\(s\) \['title'\] more than once"),
    ("item_id,item\n5,A\n", r"Beauty_items\.csv: column\(s\) \['item'\] clash"),
    (HEADER + "5,B1,A,,,,,extra\n", r"Beauty_items\.csv: rows have more fields than the header"),
    (HEADER + "100,B1,A,,,,\n101,B2,B,,,,\n", r"Beauty_items\.csv: none of its 2 item ids"),
    ("", r"Beauty_items\.csv: the file is empty"),
])
def test_bad_item_csv_is_a_data_error_naming_file_column_row(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        load_s3rec(_write(tmp_path, csv=content), "Beauty")


def test_non_utf8_item_csv(tmp_path):
    path = _write(tmp_path)
    (tmp_path / "Beauty_items.csv").write_bytes(HEADER.encode() + b"5,B1,Caf\xe9,,,,\n")
    with pytest.raises(DataError, match=r"Beauty_items\.csv: not UTF-8 text: byte 0xe9 at line 2"):
        load_s3rec(path, "Beauty")


# ------------------------------------------------------------------------------------ the shared files
@pytest.mark.parametrize("name, n_items, sample_id, sample_text", [
    ("Beauty", 12101, "1", "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce. Brand: OPI. "
                           "Category: Beauty > Makeup > Nails > Nail Polish"),
    ("Toys_and_Games", 11924, "1", "Pocoyo And Friends Swiggle Traks Feature Track With Bridge. "
                                   "Category: Toys & Games > Dolls & Accessories > Dolls"),
    ("Sports_and_Outdoors", 18357, "1", "Ghost, Sports & Outdoors, Hunting & Fishing, Hunting, Gun Maintenance, "
                                        "Gunsmithing Tools. Keywords: ghost armorers tool 332 punch hunting fishing"),
    ("Yelp", 20033, "1", "The Great Greek. Categories: Diners, Greek, Mediterranean, Restaurants"),
])
def test_shared_s3rec_item_text(shared_dir, name, n_items, sample_id, sample_text):
    path = shared_dir / "data/s3rec" / f"{name}.txt"
    if not path.with_name(f"{name}_items.csv").exists():
        pytest.skip(f"{name}_items.csv not in shared/")
    split = load_split(DataConfig(name=f"s3rec:{name}", path=str(path), cache=False))
    assert split.n_items == n_items and split.default_template is not None
    texts = dict(zip(split.item_vocab.ids, split.render_texts()))
    assert texts[sample_id] == sample_text
    assert split.stats["items_without_text"] == 0
    assert not any(t.startswith((".", " ")) or "nan" in t.split() for t in texts.values())
