"""Issue 28, text side: no unusable vector is ever cached, empty item texts are a choice, model folders that
cannot be loaded are named. Encoders are stubbed (deterministic per text) unless a test needs a real tokenizer."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import semcollab.text.encoders as encoders
from semcollab.cli import app
from semcollab.config import ConfigError, from_dict
from semcollab.data import DataError
from semcollab.hub.models import ModelError
from semcollab.text import EmbedConfig, embed_texts, item_embeddings, resolve_encoder
from semcollab.text.cache import EmbeddingCache
from semcollab.text.encoders import EncoderOutputError, EncoderSpec, ModelFolderError, TextEncoder
from tests.conftest import write_atomic

TEXTS = ["toy story", "golden eye", "space war", "love"]
DIM = 8


def _vector(text: str) -> np.ndarray:
    v = np.frombuffer(hashlib.sha256(text.encode()).digest()[:DIM], dtype=np.uint8).astype(np.float32) + 1
    return v / np.linalg.norm(v)


class StubEncoder:
    """Stands in for TextEncoder: a fixed vector per text; ``bad`` maps a text to the vector it gets instead."""

    bad: dict = {}
    calls: list = []

    def __init__(self, spec, device="auto", dtype="auto", batch_size=64, progress=False):
        self.spec, self.device, self.dim = spec, torch.device("cpu"), DIM

    def encode(self, texts):
        StubEncoder.calls.append(list(texts))
        return np.stack([self.bad.get(t, _vector(t)) for t in texts]).astype(np.float32)


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setattr(encoders, "TextEncoder", StubEncoder)
    monkeypatch.setattr(StubEncoder, "bad", {})
    monkeypatch.setattr(StubEncoder, "calls", [])
    return StubEncoder


def _spec(tmp_path) -> EncoderSpec:
    return EncoderSpec("stub-encoder", "hf", str(tmp_path / "no-model"))


def _cached_rows(cache_dir) -> int:
    return sum(len(np.load(f)["keys"]) for f in Path(cache_dir).rglob("shard-*.npz"))


BAD = {"zeros": np.zeros(DIM, np.float32), "nan": np.full(DIM, np.nan, np.float32),
       "inf": np.r_[np.inf, np.zeros(DIM - 1)].astype(np.float32)}


# ------------------------------------------------------------------ 1. never cache an unusable vector
@pytest.mark.parametrize("kind", sorted(BAD))
def test_encoder_giving_zero_or_non_finite_vectors_is_an_error_and_nothing_is_cached(stub, tmp_path, kind):
    stub.bad = {TEXTS[2]: BAD[kind]}
    with pytest.raises(EncoderOutputError, match=r"'stub-encoder'.*text 2 \('space war'\)") as exc:
        embed_texts(TEXTS, _spec(tmp_path), tmp_path / "cache")
    assert isinstance(exc.value, ModelError)  # the CLI prints it as one 'error:' line
    assert _cached_rows(tmp_path / "cache") == 0


def test_bad_vector_error_names_the_item(stub, toy_split, tiny_bert, tmp_path):
    raw = toy_split.items["item"][7]
    stub.bad = {toy_split.render_texts()[6]: BAD["zeros"]}
    with pytest.raises(EncoderOutputError, match=rf"toy, item {raw} \(index 7\)"):
        item_embeddings(toy_split, EmbedConfig(encoder=str(tiny_bert), cache_dir=str(tmp_path)))
    assert _cached_rows(tmp_path) == 0


def test_batch_size_minus_one_is_refused_instead_of_zero_vectors(tiny_bert, tmp_path):
    """Was: ``embed --batch-size -1`` encoded nothing, returned zeros, cached them, exit 0."""
    with pytest.raises(ConfigError, match="batch_size.*-1"):
        embed_texts(TEXTS, resolve_encoder(str(tiny_bert)), tmp_path, batch_size=-1)
    assert _cached_rows(tmp_path) == 0


def test_zero_vector_of_an_empty_text_is_kept_but_never_cached(stub, tmp_path):
    stub.bad = {"": BAD["zeros"]}
    with pytest.warns(UserWarning, match="1 empty text"):
        vecs, _ = embed_texts(["love", ""], _spec(tmp_path), tmp_path)
    assert not vecs[1].any() and _cached_rows(tmp_path) == 1


def test_cache_put_leaves_out_unusable_rows(tmp_path):
    cache = EmbeddingCache(tmp_path, "k")
    vecs = np.stack([_vector("a"), BAD["zeros"], BAD["nan"]])
    with pytest.warns(UserWarning, match="2 of 3 embedding vectors are all zero or not finite"):
        cache.put(["a", "b", "c"], vecs)
    found, missing = EmbeddingCache(tmp_path, "k").get(["a", "b", "c"])
    assert list(found) == [0] and missing == [1, 2]


def _plant_shard(cache_dir: Path, keys: list[str], vectors: np.ndarray) -> None:
    """A shard with a valid checksum, as the old code wrote it for ``--batch-size -1``."""
    tmp = cache_dir / "planted.npz"
    np.savez(tmp, keys=np.array(keys), vectors=vectors.astype(np.float32))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    (cache_dir / f"shard-{digest[:16]}.json").write_text(json.dumps({"sha256": digest, "n": len(keys)}))
    tmp.replace(cache_dir / f"shard-{digest[:16]}.npz")


@pytest.mark.parametrize("kind", ["zeros", "nan"])
def test_cached_zero_or_nan_vectors_are_damaged_and_encoded_again(stub, tmp_path, kind):
    first, st = embed_texts(TEXTS, _spec(tmp_path), tmp_path)
    cache_dir = Path(st["cache_dir"])
    for f in cache_dir.glob("shard-*"):
        f.unlink()
    from semcollab.text.cache import text_hash

    poisoned = np.stack([BAD[kind]] * len(TEXTS))
    _plant_shard(cache_dir, [text_hash(t) for t in TEXTS], poisoned)
    with pytest.warns(UserWarning, match="damaged.*all zero or not finite"):
        again, st2 = embed_texts(TEXTS, _spec(tmp_path), tmp_path)
    assert st2["cache_hits"] == 0 and st2["encoded"] == len(TEXTS)
    np.testing.assert_array_equal(again, first)
    _, st3 = embed_texts(TEXTS, _spec(tmp_path), tmp_path)  # healed: the re-encoded vectors are cached
    assert st3["cache_hits"] == len(TEXTS)


# ------------------------------------------------------------------ 2. items with an empty text
def _blank(split, rows, cols=("title",)):
    """Empty ``cols`` of item indices ``rows``; their raw ids, as the messages print them."""
    for c in cols:
        split.items.loc[list(rows), c] = ""
    return str([str(split.items["item"][i]) for i in rows][:5]).replace("[", r"\[").replace("]", r"\]")


def test_empty_texts_warn_with_count_and_ids_and_get_a_fallback_text_by_default(stub, toy_split, tiny_bert, tmp_path):
    ids = _blank(toy_split, [3, 5, 9])
    _blank(toy_split, [9], ("genres",))  # nothing left at all: "item <id>"
    cfg = EmbedConfig(encoder=str(tiny_bert), template="{title}", cache_dir=str(tmp_path))
    n = toy_split.n_items
    with pytest.warns(UserWarning, match=rf"toy: 3 of {n} items have an empty text.*{ids}.*fallback"):
        vecs, stats = item_embeddings(toy_split, cfg, out_dir=tmp_path / "out")
    assert stats["empty_texts"] == 3 and stats["empty_text"] == "template"
    rows = [json.loads(x) for x in (tmp_path / "out" / "item_texts.jsonl").read_text().splitlines()]
    genres, raw9 = toy_split.items["genres"][3], toy_split.items["item"][9]
    assert rows[2] == {"index": 3, "item": toy_split.items["item"][3], "text": "", "empty_text": "template",
                       "encoded_text": f"genres: {genres}"}  # its other text field
    assert rows[8]["encoded_text"] == f"item {raw9}"
    assert not np.allclose(vecs[3], vecs[9]) and not np.allclose(vecs[5], vecs[9])  # no shared empty vector
    assert "" not in [t for call in stub.calls for t in call]


def test_empty_text_refuse_names_count_and_examples(stub, toy_split, tiny_bert, tmp_path):
    ids = _blank(toy_split, [2, 4])
    cfg = EmbedConfig(encoder=str(tiny_bert), template="{title}", cache_dir=str(tmp_path), empty_text="refuse")
    n = toy_split.n_items
    with pytest.raises(DataError, match=rf"toy: 2 of {n} items have an empty text.*{ids}.*empty_text=refuse"):
        item_embeddings(toy_split, cfg)
    assert stub.calls == []


def test_empty_text_skip_gives_no_vector_and_the_semantic_model_never_ranks_them(stub, toy_split, tiny_bert, tmp_path):
    from semcollab.models.semantic import SemanticConfig, SemanticMean

    _blank(toy_split, [2, 4])
    cfg = from_dict(SemanticConfig, {"encoder": str(tiny_bert), "template": "{title}", "cache_dir": str(tmp_path),
                                     "empty_text": "skip"})
    with pytest.warns(UserWarning, match=f"2 of {toy_split.n_items} items have an empty text.*no text vector"):
        model = SemanticMean.from_split(toy_split, cfg)
    assert not model.item_vectors[[2, 4]].any() and model.item_vectors[[1, 3]].any(-1).all()
    s = model.score(torch.tensor([0]), torch.tensor([[1, 2, 3]]))
    assert torch.isinf(s[0, [2, 4]]).all() and (s[0, [2, 4]] < 0).all()
    assert torch.isfinite(s[0, [1, 3, 5]]).all()
    # a skipped item in the history does not dilute or move the user's vector
    torch.testing.assert_close(model.user_vectors(torch.tensor([[1, 2, 3]])), model.user_vectors(torch.tensor([[1, 3]])))
    with pytest.warns(UserWarning):
        red, _ = item_embeddings(toy_split, EmbedConfig(encoder=str(tiny_bert), template="{title}", pca_dim=4,
                                                        cache_dir=str(tmp_path), empty_text="skip"))
    assert not red[[2, 4]].any() and red[[1, 3]].any(-1).all()  # PCA centring does not revive them
    with pytest.raises(ConfigError, match="model_params.empty_text"):
        from_dict(SemanticConfig, {"empty_text": "drop"}, prefix="model_params.")


# ------------------------------------------------------------------ 3. all text empty; folders without a model
def test_all_item_texts_empty_is_a_data_error_naming_data_and_columns(stub, toy_split, tiny_bert, tmp_path):
    _blank(toy_split, range(1, toy_split.n_items + 1), ("title", "genres"))
    with pytest.raises(DataError, match=r"toy: every item text is empty.*\['title', 'genres'\]"):
        item_embeddings(toy_split, EmbedConfig(encoder=str(tiny_bert), cache_dir=str(tmp_path)))


runner = CliRunner()


def _fails(args, *needles):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output
    text = "".join(r.output.split())  # rich wraps long lines, even inside a long path
    for n in needles:
        assert "".join(n.split()) in text, (n, r.output)
    return text


def test_cli_embed_with_all_item_text_empty(tmp_path, tiny_bert):
    d = write_atomic(tmp_path / "toy")
    items = pd.read_csv(d / "toy.item", sep="\t")
    items["movie_title:token_seq"] = ""
    items["class:token_seq"] = ""
    items.to_csv(d / "toy.item", sep="\t", index=False)
    _fails(["embed", "--dataset", "atomic:toy", f"--data.path={d}", "--encoder", tiny_bert, "--out", tmp_path / "o"],
           "error:", "every item text is empty")


def test_encoder_folder_without_a_model_is_named(tmp_path, toy_dir):
    empty = tmp_path / "my-model"
    empty.mkdir()
    with pytest.raises(ModelFolderError, match=f"folder {empty} holds no model.*config.json"):
        resolve_encoder(str(empty))
    with pytest.raises(ModelFolderError, match=f"no folder at {tmp_path / 'nosuch' / 'model'}"):
        resolve_encoder(str(tmp_path / "nosuch" / "model"))
    text = _fails(["embed", "--dataset", "atomic:toy", f"--data.path={toy_dir}", "--encoder", empty,
                   "--out", tmp_path / "o"], "error:", "holds no model", "sentence-transformers folder")
    assert "Repoid" not in text
    text = _fails(["embed", "--dataset", "atomic:toy", f"--data.path={toy_dir}", "--encoder", tmp_path / "a" / "b",
                   "--out", tmp_path / "o"], "error:", "no folder at")
    assert "Repoid" not in text


def _truncated_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    blob = (dst / "tokenizer.json").read_bytes()
    (dst / "tokenizer.json").write_bytes(blob[: len(blob) // 2])
    return dst


def test_truncated_tokenizer_json_is_named(tiny_bert, tiny_causal_lm, tmp_path, toy_dir):
    from semcollab.lm import load_causal_lm

    bert = _truncated_copy(tiny_bert, tmp_path / "bert")
    with pytest.raises(ModelFolderError, match=f"tokenizer file {bert / 'tokenizer.json'} is damaged"):
        TextEncoder(resolve_encoder(str(bert)), device="cpu")
    llama = _truncated_copy(tiny_causal_lm, tmp_path / "llama")
    with pytest.raises(ModelFolderError, match=f"tokenizer file {llama / 'tokenizer.json'} is damaged"):
        load_causal_lm(str(llama))
    _fails(["embed", "--dataset", "atomic:toy", f"--data.path={toy_dir}", "--encoder", bert, "--out", tmp_path / "o"],
           "error:", "tokenizer.json is damaged")


def test_saerec_refuses_empty_text_skip_before_any_data_is_read(tmp_path):
    """The SAE would fit every skipped item's all-zero row as one shared, bias-only intent."""
    import semcollab

    with pytest.raises(ConfigError, match="'model_params.empty_text'.*not supported by saerec"):
        semcollab.run(model="saerec", dataset="table",
                      overrides=["model_params.empty_text=skip", f"data.path={tmp_path / 'nope.csv'}"])
