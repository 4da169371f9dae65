from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from semcollab.text import (
    EmbedConfig,
    embed_texts,
    fit_pca,
    item_embeddings,
    render_item_texts,
    resolve_encoder,
)
from semcollab.text.encoders import TextEncoder

from ..tolerance import assert_close_rounding, transformer_reductions

TEXTS = ["toy story animation comedy", "golden eye action thriller", "space war drama", "love"]


def test_templates_default_custom_and_missing_column():
    items = pd.DataFrame({"item": ["[PAD]", "1", "2"], "title": ["", "Toy Story", "GoldenEye"], "year": ["", "1995", ""]})
    assert render_item_texts(items, ["title", "year"]) == ["title: Toy Story; year: 1995", "title: GoldenEye"]
    assert render_item_texts(items, [], "{title} ({year})") == ["Toy Story (1995)", "GoldenEye ()"]
    with pytest.raises(KeyError, match="brand"):
        render_item_texts(items, [], "{title} by {brand}")


def test_length_sorted_batches_match_one_by_one(tiny_bert):
    enc = TextEncoder(resolve_encoder(str(tiny_bert)), device="cpu", batch_size=3)
    batched = enc.encode(TEXTS)
    enc.batch_size = 1
    single = enc.encode(TEXTS)
    assert batched.shape == (4, 32)
    # batches of 3 vs 1: other kernel shapes, a 1-layer BERT's rounding (tests/tolerance.py), then normalised
    cfg = SimpleNamespace(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1)
    t = max(len(x.split()) for x in TEXTS) + 2  # words + [CLS] [SEP] (the word-level test tokenizer)
    assert_close_rounding(batched, single, transformer_reductions(cfg, t) + [32], "batched vs one by one")
    assert_close_rounding(np.linalg.norm(batched, axis=1), np.ones(len(TEXTS), np.float32), [32, 32], "norm")


def test_last_token_pooling_of_causal_lm(tiny_llama):
    mean = TextEncoder(resolve_encoder(str(tiny_llama), pooling="mean"), device="cpu").encode(TEXTS)
    last = TextEncoder(resolve_encoder(str(tiny_llama), pooling="last"), device="cpu", batch_size=2).encode(TEXTS)
    assert not np.allclose(mean, last)
    # last-token state of a causal LM depends only on its own prefix: padding in a batch must not change it
    alone = TextEncoder(resolve_encoder(str(tiny_llama), pooling="last"), device="cpu", batch_size=1).encode(TEXTS)
    cfg = SimpleNamespace(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1)
    t = max(len(x.split()) for x in TEXTS) + 2
    assert_close_rounding(last, alone, transformer_reductions(cfg, t, pooled=False) + [32], "batch 2 vs alone")


def test_cache_reuses_and_separates_models(tiny_bert, tmp_path):
    spec = resolve_encoder(str(tiny_bert))
    v1, s1 = embed_texts(TEXTS, spec, tmp_path)
    v2, s2 = embed_texts(TEXTS + ["toy"], spec, tmp_path)
    assert s1["encoded"] == 4 and s2["cache_hits"] == 4 and s2["encoded"] == 1
    np.testing.assert_array_equal(v1, v2[:4])
    _, s3 = embed_texts(TEXTS, resolve_encoder(str(tiny_bert), prompt="query: "), tmp_path)
    assert s3["cache_hits"] == 0  # another prompt is another encoder key


def test_duplicate_texts_encoded_once_and_fresh_equals_cached(tiny_bert, tmp_path):
    """A first (encoding) run must hand out exactly the vectors a later run reads from the cache."""
    spec = resolve_encoder(str(tiny_bert))
    texts = ["a red lipstick", "shampoo", "a red lipstick", "a much longer text about a red lipstick", "shampoo"]
    fresh, st = embed_texts(texts, spec, tmp_path, batch_size=2)
    assert st["encoded"] == 3
    np.testing.assert_array_equal(fresh[0], fresh[2])
    cached, st2 = embed_texts(texts, spec, tmp_path, batch_size=2)
    assert st2["encoded"] == 0
    np.testing.assert_array_equal(fresh, cached)


def test_damaged_cache_shard_is_reported_removed_and_reencoded(tiny_bert, tmp_path):
    spec = resolve_encoder(str(tiny_bert))
    first, st = embed_texts(TEXTS, spec, tmp_path)
    from pathlib import Path

    (shard,) = list(Path(st["cache_dir"]).glob("shard-*.npz"))
    shard.write_bytes(b"oops")
    with pytest.warns(UserWarning, match="damaged"):
        again, st2 = embed_texts(TEXTS, spec, tmp_path)
    assert st2["encoded"] == len(set(TEXTS))  # nothing was read from the damaged shard
    np.testing.assert_allclose(again, first, atol=1e-6)
    assert not shard.exists() or shard.read_bytes() != b"oops"


def test_unwritable_embedding_cache_is_a_warning_and_leaves_no_temp_files(tiny_bert, tmp_path, monkeypatch):
    import errno

    spec = resolve_encoder(str(tiny_bert))

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.warns(UserWarning, match="could not write the embedding cache"):
        vecs, st = embed_texts(TEXTS, spec, tmp_path)
    assert vecs.shape[0] == len(TEXTS)
    leftovers = [p.name for p in (tmp_path / "embeddings").rglob("*") if p.is_file()]
    assert leftovers == [], leftovers


def test_pca_fits_on_training_rows_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 10)).astype(np.float32)
    x[150:] += 100  # 'test-only' items far away: must not move the fitted mean
    red = fit_pca(x, np.arange(150), dim=4, whiten=True)
    np.testing.assert_allclose(red.mean, x[:150].mean(0), atol=1e-4)
    z = red.transform(x[:150])
    np.testing.assert_allclose(z.std(0, ddof=1), 1.0, atol=1e-3)
    with pytest.raises(ValueError):
        fit_pca(x, np.arange(150), dim=11)


def test_item_embeddings_align_with_item_indices(toy_split, tiny_bert, tmp_path):
    vecs, stats = item_embeddings(toy_split, EmbedConfig(encoder=str(tiny_bert), template="{title} {genres}",
                                                         cache_dir=str(tmp_path)), out_dir=tmp_path / "out")
    assert vecs.shape == (toy_split.n_items + 1, 32) and not vecs[0].any()
    lines = (tmp_path / "out" / "item_texts.jsonl").read_text().splitlines()
    assert len(lines) == toy_split.n_items and '"index": 1' in lines[0]
    red, _ = item_embeddings(toy_split, EmbedConfig(encoder=str(tiny_bert), pca_dim=8, cache_dir=str(tmp_path)))
    assert red.shape == (toy_split.n_items + 1, 8)


def test_semantic_model_ranks_by_mean_history_vector(toy_split):
    import torch

    from semcollab.models.semantic import SemanticConfig, SemanticMean

    vecs = np.zeros((toy_split.n_items + 1, 2), dtype=np.float32)
    vecs[1:, 0] = 1
    vecs[3, :] = [0, 1]
    vecs[4, :] = [0.1, 1]
    m = SemanticMean(toy_split.n_users, toy_split.n_items, SemanticConfig(), vecs)
    s = m.score(torch.tensor([0]), torch.tensor([[0, 3]]))
    assert s[0, 1:].argmax().item() + 1 == 3 and s[0, 4] > s[0, 5]


def test_real_minilm_weights_offline():
    try:
        spec = resolve_encoder("minilm")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    v = TextEncoder(spec, device="cpu").encode(["Toy Story: animated comedy", "Aladdin: animated musical",
                                                "GoldenEye: spy action thriller"])
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > v[0] @ v[2]
