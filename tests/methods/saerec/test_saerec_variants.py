"""SAERec's selectable variants: cosine retrieval with an EMA IDF, low-IDF public intents, attention fusion,
and the LM keep-list (the authors' choices, beside this project's defaults)."""

import json

import numpy as np
import pytest
import torch

import semcollab.methods.saerec.model as saerec_mod
from semcollab.config import ConfigError, EvalConfig, TrainConfig, from_dict
from semcollab.methods.saerec.intents import IntentFileError, build_library, latent_idf, load_keep, low_idf_intents
from semcollab.methods.saerec.model import SAERec, SAERecConfig
from semcollab.models import build_model

N_ITEMS, N_LAT = 8, 12


def make(keep=None, **kw):
    """An SAERec over 8 items and 12 latents (2 active per item), built without text or an SAE."""
    rng = np.random.default_rng(0)
    idx = np.stack([np.arange(N_ITEMS + 1) % N_LAT, (np.arange(N_ITEMS + 1) * 5 + 3) % N_LAT], 1)
    val = rng.uniform(0.5, 2.0, size=idx.shape).astype(np.float32)
    idf = latent_idf(idx[1:], val[1:], N_LAT) + 0.1
    cfg = SAERecConfig(hidden=16, layers=1, heads=2, max_len=6, n_personal=3, n_public=2, recent=3, **kw)
    torch.manual_seed(0)
    return SAERec(3, N_ITEMS, cfg, idx, val, rng.normal(size=(N_LAT, 8)).astype(np.float32), idf,
                  low_idf_intents(idf, 2, None if keep is None else np.flatnonzero(keep)), keep)


def brute_cosine(m, seqs):
    """Reference cosine retrieval over all latents at once: (scores (B, L, n_latents), fired counts)."""
    with torch.no_grad():
        u = torch.nn.functional.normalize(m.user_vectors(seqs), dim=-1)
        tok = torch.nn.functional.normalize(m.intent_proj(m.directions), dim=-1)
        cos = torch.einsum("blh,jh->blj", u, tok)
        valid = (seqs > 0)[..., None]
        return (cos.clamp(min=0) * m.cosine_idf() * valid), ((cos > 0) & valid).sum((0, 1)).float()


SEQS = torch.tensor([[0, 0, 1, 2, 3, 4], [0, 5, 6, 7, 8, 1]])


def test_cosine_retrieval_matches_reference_in_chunks(monkeypatch):
    m = make(retrieval="cosine").eval()
    ref, _ = brute_cosine(m, SEQS)
    lat, w = m.personal_intents(SEQS)
    assert lat.shape == w.shape == (2, 6, 3)
    torch.testing.assert_close(w, ref.topk(3, -1).values)
    assert (w[0, :2] == 0).all()  # padding has no intents
    torch.testing.assert_close(torch.gather(ref, 2, lat), w)  # the ids are the ones scoring those values
    monkeypatch.setattr(saerec_mod, "COSINE_CHUNK_ELEMS", 7)  # 1 latent per chunk: running top-k must agree
    lat2, w2 = m.personal_intents(SEQS)
    torch.testing.assert_close(w2, w)
    torch.testing.assert_close(torch.gather(ref, 2, lat2), w)


@pytest.mark.parametrize("retrieval", ["cosine", "tfidf"])
def test_intents_never_use_later_items(retrieval):
    m = make(retrieval=retrieval)
    a = torch.tensor([[0, 1, 2, 3, 4, 5]])
    b = torch.tensor([[0, 1, 2, 3, 7, 8]])  # same up to t = 3, other items after
    for train in (True, False):  # training reads the IDF before adding the batch: causal there too
        m.train(train)
        lat, w = m.personal_intents(torch.cat([a, b]))
        torch.testing.assert_close(w[0, :4], w[1, :4])
        assert torch.equal(lat[0, :4][w[0, :4] > 0], lat[1, :4][w[1, :4] > 0])
        assert not torch.equal(w[0, 4:], w[1, 4:])
    # the whole model: the state at t (and so the score from a history ending at t) ignores later items
    m.eval()
    fa, *_ = m._branches(a)
    fb, *_ = m._branches(b)
    torch.testing.assert_close(fa[:, :4], fb[:, :4])


def test_idf_ema_updates_in_training_only_and_is_saved():
    m = make(retrieval="cosine", idf_decay=0.8)
    assert torch.allclose(m.cosine_idf(), torch.full((N_LAT,), float(np.log(2.0))))  # uniform start
    _, fired = brute_cosine(m, SEQS)
    m.train()
    m.personal_intents(SEQS)
    n = int((SEQS > 0).sum())
    torch.testing.assert_close(m.ema_df, 0.2 * fired)
    torch.testing.assert_close(m.ema_total, torch.tensor(0.8 * 1 + 0.2 * n))
    state = {k: v.clone() for k, v in m.state_dict().items()}
    assert {"ema_df", "ema_total"} <= set(state)
    m.eval()
    m.score(None, SEQS)
    m.explain(SEQS[:1], 3)
    assert torch.equal(m.ema_df, state["ema_df"]) and torch.equal(m.ema_total, state["ema_total"])
    # the default variant keeps the old state dict (runs saved before these options still load)
    assert not {"ema_df", "ema_total", "candidates", "fuse_q.weight"} & set(make().state_dict())


def test_low_idf_public_intents_are_the_lowest_idf_ones():
    idf = np.array([0.5, 0.1, 0.9, 0.1, 0.3])
    assert low_idf_intents(idf, 3).tolist() == [1, 3, 4]
    assert low_idf_intents(idf, 2, allowed=np.array([4, 2, 0])).tolist() == [4, 0]
    # tfidf retrieval: the item-level IDF, fixed; cosine retrieval: the EMA IDF, re-chosen per training step
    m = make(retrieval="cosine", public="low_idf")
    m.train()
    for _ in range(3):
        m.loss({"seqs": SEQS, "targets": torch.roll(SEQS, -1, 1)})
        idf_now = m.cosine_idf()
        assert m.public_ids.tolist() == torch.argsort(idf_now, stable=True)[:2].tolist()
        assert idf_now[m.public_ids].max() <= torch.sort(idf_now).values[1]
    frozen = m.public_ids.clone()
    m.eval()
    m.score(None, SEQS)
    assert torch.equal(m.public_ids, frozen)
    # without a personal branch the EMA (and so the public set) is still kept up to date in training
    solo = make(retrieval="cosine", public="low_idf", use_personal=False).train()
    solo.loss({"seqs": SEQS, "targets": torch.roll(SEQS, -1, 1)})
    assert solo.ema_total > 1
    assert solo.public_ids.tolist() == torch.argsort(solo.cosine_idf(), stable=True)[:2].tolist()


@pytest.mark.parametrize("kw", [{"fusion": "attention"}, {"fusion": "attention", "retrieval": "cosine"},
                                {"fusion": "gate", "retrieval": "cosine", "public": "low_idf"}])
def test_explanation_terms_sum_to_the_score(kw):
    m = make(**kw).eval()
    seq = torch.tensor([[0, 1, 2, 3, 4]])
    ex = m.explain(seq, 6)
    total = ex["sequence_term"] + sum(i["contribution"] for i in ex["intents"])
    assert abs(total - ex["score"]) < 1e-4
    assert abs(ex["score"] - float(m.score(None, seq)[0, 6].detach())) < 1e-4
    assert ex["fusion"] == kw["fusion"] and ex["gate"]["sequence"] == 1.0
    assert {i["kind"] for i in ex["intents"]} == {"personal", "public"}
    if kw["fusion"] == "attention":
        assert abs(ex["gate"]["personal"] + ex["gate"]["public"] - 1) < 1e-5  # a softmax over the intent branches
        one = make(use_public=False, **kw).eval().explain(seq, 6)
        assert one["gate"]["public"] == 0 and one["gate"]["personal"] == 1.0
        none = make(use_public=False, use_personal=False, **kw).eval().explain(seq, 6)
        assert none["intents"] == [] and abs(none["sequence_term"] - none["score"]) < 1e-5
    training = make(**kw).train()
    assert training.explain(seq, 6)["score"] == pytest.approx(ex["score"], abs=1e-5) and training.training


@pytest.mark.parametrize("retrieval", ["tfidf", "cosine"])
def test_keep_list_excludes_other_latents(retrieval):
    keep = np.zeros(N_LAT, dtype=bool)
    keep[[1, 3, 4, 8]] = True
    m = make(keep=keep, retrieval=retrieval, public="low_idf").train()
    seqs = torch.tensor([[1, 2, 3, 4, 5, 6], [0, 7, 8, 1, 2, 3]])
    for _ in range(2):
        lat, w = m.personal_intents(seqs)
        assert (w > 0).any() and set(lat[w > 0].tolist()) <= {1, 3, 4, 8}
    assert set(m.public_ids.tolist()) <= {1, 3, 4, 8}
    ex = m.eval().explain(seqs[:1], 7)
    assert ex["intents"] and {i["latent"] for i in ex["intents"]} <= {1, 3, 4, 8}
    with pytest.raises(ValueError, match="at least one kept"):
        make(keep=np.zeros(N_LAT, dtype=bool))


@pytest.mark.parametrize("key, value", [("retrieval", "bm25"), ("public", "rare"), ("fusion", "concat"),
                                        ("idf_decay", 1.0), ("idf_decay", -0.1), ("intents_file", " "),
                                        ("intents_file", "/no/such/intents.json")])
def test_bad_settings_name_their_key(key, value):
    with pytest.raises(ConfigError, match=f"model_params.{key}"):
        from_dict(SAERecConfig, {key: value}, prefix="model_params.")


# ------------------------------------------------------------------ built from data and trained
def params(tiny_bert, **kw):
    return {"encoder": str(tiny_bert), "hidden": 16, "layers": 1, "max_len": 10, "n_personal": 3, "n_public": 3,
            "sae": {"steps": 30, "expansion": 2, "k": 3}, **kw}


@pytest.mark.parametrize("kw", [{"retrieval": "cosine"}, {"public": "low_idf"}, {"fusion": "attention"},
                                {"retrieval": "cosine", "public": "low_idf", "fusion": "attention"}])
def test_variants_train_and_loss_falls(toy_split, tiny_bert, kw):
    from semcollab.train.trainer import fit

    m = build_model("saerec", params(tiny_bert, **kw), toy_split)
    res = fit(m, toy_split, TrainConfig(epochs=4, batch_size=64, lr=5e-3, progress=False, eval_every=4),
              EvalConfig(), log=None)
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < losses[0], losses
    if kw.get("retrieval") == "cosine":
        assert m.ema_total > 1 and (m.ema_df > 0).any()


def test_keep_list_from_an_intents_file(toy_split, tiny_bert, tmp_path):
    base = build_model("saerec", params(tiny_bert), toy_split)
    texts = toy_split.render_texts(None)
    lib = build_library(base.act_idx.numpy(), base.act_val.numpy(), texts, base.n_latents)
    live = [j for j in range(base.n_latents) if lib.density[j] > 0]
    kept = set(live[::2])
    lib.keep.update({j: j in kept for j in live})
    path = tmp_path / "intents.json"
    lib.save(path, list(toy_split.item_vocab.ids), texts)
    assert load_keep(path, lib.labels).sum() == len(kept)
    for retrieval in ("tfidf", "cosine"):
        m = build_model("saerec", params(tiny_bert, intents_file=str(path), retrieval=retrieval), toy_split)
        assert set(m.candidates.tolist()) == kept and set(m.public_ids.tolist()) <= kept
        lat, w = m.personal_intents(torch.tensor(toy_split.train_sequences()[0][-10:])[None])
        assert (w > 0).any() and set(lat[w > 0].tolist()) <= kept
    # unjudged or foreign files are refused
    recs = json.loads(path.read_text())
    path.write_text(json.dumps([{k: v for k, v in r.items() if k != "keep"} for r in recs]))
    with pytest.raises(IntentFileError, match="no \"keep\" flags"):
        load_keep(path, lib.labels)
    path.write_text(json.dumps([{**r, "label": "other"} for r in recs]))
    with pytest.raises(IntentFileError, match="different SAE"):
        build_model("saerec", params(tiny_bert, intents_file=str(path)), toy_split)


@pytest.mark.parametrize("retrieval,fusion", [("tfidf", "gate"), ("cosine", "gate"), ("tfidf", "attention")])
def test_score_reads_the_last_position_of_the_full_forward(retrieval, fusion):
    """``score`` computes the intent branches at the last position only (recent=3 < max_len=6, so the tfidf
    window is cut); it must equal the last position of the all-positions forward."""
    m = make(retrieval=retrieval, fusion=fusion).eval()
    with torch.no_grad():
        fused, *_ = m._branches(SEQS)
        torch.testing.assert_close(m.score(torch.tensor([1, 2]), SEQS), fused[:, -1] @ m.item_table().T)


def test_intent_tokens_project_each_latent_like_the_dense_projection():
    m = make()
    lat = torch.tensor([[[3, 1, 3], [0, 11, 1]]])
    torch.testing.assert_close(m._intent_tokens(lat), m.intent_proj(m.directions[lat]))


@pytest.mark.parametrize("retrieval", ["tfidf", "cosine"])
def test_scores_do_not_depend_on_left_padding(retrieval):
    """SAERec inherits ``padding_invariant`` (evaluation sorts its users by length): extra padding changes
    nothing, intents included."""
    m = make(retrieval=retrieval).eval()
    short = torch.tensor([[0, 2, 3, 4], [5, 6, 7, 8]])
    padded = torch.cat([torch.zeros(2, 2, dtype=torch.long), short], 1)
    with torch.no_grad():
        torch.testing.assert_close(m.score(torch.tensor([1, 2]), short), m.score(torch.tensor([1, 2]), padded))


def test_branch_dropout_acts_in_training_only_and_zero_changes_nothing():
    """``branch_dropout`` makes the intent branches stochastic in training, leaves evaluation as it was, and
    at 0 runs no dropout op at all, so runs made before the option existed replay identically."""
    plain, dropped = make(), make(branch_dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    with torch.no_grad():
        plain.eval(), dropped.eval()
        torch.testing.assert_close(dropped._branches(SEQS)[0], plain._branches(SEQS)[0])
        dropped.personal.train()
        a = dropped.personal(torch.ones(2, 6, 16), torch.ones(4, 16), torch.ones(2, 6, 4, dtype=torch.bool))[0]
        b = dropped.personal(torch.ones(2, 6, 16), torch.ones(4, 16), torch.ones(2, 6, 4, dtype=torch.bool))[0]
        assert not torch.equal(a, b)
        plain.train()
        state = torch.get_rng_state()
        plain.personal(torch.ones(2, 6, 16), torch.ones(4, 16), torch.ones(2, 6, 4, dtype=torch.bool))
        assert torch.equal(torch.get_rng_state(), state)  # p = 0: the RNG stream is untouched


def test_shuffled_intents_keep_every_statistic_but_the_item_link(toy_split, tiny_bert):
    """The null control: the same trained SAE, each item given another item's activation row. Latent
    document frequencies (so the IDF) and the multiset of rows are unchanged; the item-row link is not."""
    from semcollab.methods.saerec.intents import shuffle_items

    base = build_model("saerec", params(tiny_bert), toy_split)
    shuf = build_model("saerec", params(tiny_bert, intent_source="shuffled"), toy_split)
    torch.testing.assert_close(shuf.directions, base.directions)  # the same trained SAE (from the cache)
    torch.testing.assert_close(shuf.idf, base.idf)
    a = sorted(map(tuple, np.concatenate([base.act_idx, base.act_val], 1)[1:].tolist()))
    b = sorted(map(tuple, np.concatenate([shuf.act_idx, shuf.act_val], 1)[1:].tolist()))
    assert a == b
    moved = (shuf.act_idx[1:] != base.act_idx[1:]).any(1).float().mean()
    assert moved > 0.5 and shuf.act_val[0].abs().sum() == 0  # most items moved; padding still has none
    idx = np.arange(12).reshape(6, 2)
    s_idx, s_val = shuffle_items(idx, idx * 1.0, seed=3)
    assert (s_idx[0] == idx[0]).all() and sorted(map(tuple, s_idx[1:])) == sorted(map(tuple, idx[1:]))
    assert (s_val == s_idx).all()  # rows move together
