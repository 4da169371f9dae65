import numpy as np
import torch

from semcollab.methods.saerec.intents import build_library, latent_idf, personal_intents, public_intents
from semcollab.methods.saerec.model import SAERec, SAERecConfig


def tables():
    # items 1..4; latent 0 fires on everything, latent 1 on items 1-2 ("space"), latent 2 on 3-4 ("love")
    idx = np.array([[0, 1], [0, 1], [0, 1], [0, 2], [0, 2]])
    val = np.array([[0, 0], [1.0, 2.0], [1.0, 1.5], [1.0, 2.0], [1.0, 0.5]], dtype=np.float32)
    return idx, val


def test_idf_personal_and_public_intents():
    idx, val = tables()
    idf = latent_idf(idx[1:], val[1:], 3)
    assert idf[0] < idf[1] and idf[1] == idf[2]  # the everywhere-latent is down-weighted
    assert idf[0] == 0.0  # log(4 / 5) clipped at 0
    top = personal_intents(np.array([1, 2, 3]), idx, val, idf, n=2, recent=2)
    # recent = items 2, 3: latent 1 gets 1.5 * idf, latent 2 gets 2.0 * idf -> latent 2 first
    assert [j for j, _ in top] == [2, 1]
    pub = public_intents(idx, val, np.array([1, 1, 1, 4]), 3, n=2)
    assert pub.tolist() == [1, 0]  # latent 1: 3 x 2.0 = 6 > latent 0: 4 x 1.0


def test_library_labels_from_top_items():
    idx, val = tables()
    texts = ["space war epic", "space opera war", "love story romance", "love letters romance"]
    lib = build_library(idx, val, texts, 3, n_keywords=2)
    assert "space" in lib.keywords[1] and set(lib.keywords[1]) <= {"space", "war", "epic", "opera"}
    assert "love" in lib.keywords[2] or "romance" in lib.keywords[2]
    assert lib.density.tolist() == [1.0, 0.5, 0.5]
    recs = lib.to_records(item_ids=["a", "b", "c", "d"])
    assert recs[1]["top_items"][0] == "a"
    # the padding row never counts, even when the SAE fires on the zero vector (an SAE's bias can do that)
    val_pad = val.copy()
    val_pad[0] = [5.0, 5.0]
    padded = build_library(idx, val_pad, texts, 3, n_keywords=2)
    assert padded.density.tolist() == lib.density.tolist() and padded.top_items == lib.top_items


def make_saerec(n_items=4, **kw):
    idx, val = tables()
    rng = np.random.default_rng(0)
    cfg = SAERecConfig(hidden=16, layers=1, heads=2, max_len=6, n_personal=2, n_public=2, recent=3, **kw)
    return SAERec(3, n_items, cfg, idx, val, rng.normal(size=(3, 8)).astype(np.float32),
                  latent_idf(idx[1:], val[1:], 3) + 0.1, np.array([1, 0]))


def test_saerec_causal_intents_match_reference():
    m = make_saerec()
    seqs = torch.tensor([[0, 0, 1, 2, 3, 4]])
    lat, w = m.personal_intents(seqs)
    for t in range(2, 6):
        ref = personal_intents(seqs[0, : t + 1].numpy(), m.act_idx.numpy(), m.act_val.numpy(), m.idf.numpy(), 2, 3)
        got = [(int(j), float(v)) for j, v in zip(lat[0, t], w[0, t]) if v > 0]
        assert [j for j, _ in got] == [j for j, _ in ref], t
        np.testing.assert_allclose([v for _, v in got], [v for _, v in ref], rtol=1e-5)


def test_saerec_explanation_sums_to_score_and_ablations():
    m = make_saerec()
    m.eval()
    seq = torch.tensor([[0, 1, 2, 3]])
    ex = m.explain(seq, 4)
    total = ex["sequence_term"] + sum(i["contribution"] for i in ex["intents"])
    assert abs(total - ex["score"]) < 1e-4
    assert abs(ex["score"] - float(m.score(torch.tensor([0]), seq)[0, 4].detach())) < 1e-4
    assert ex["gate"]["sequence"] == 1.0 and 0 < ex["gate"]["personal"] < 1 and 0 < ex["gate"]["public"] < 1
    no_pub = make_saerec(use_public=False)
    ex2 = no_pub.explain(seq, 4)
    assert ex2["gate"]["public"] == 0 and all(i["kind"] == "personal" for i in ex2["intents"])
    seq_only = make_saerec(use_public=False, use_personal=False)
    assert seq_only.explain(seq, 4)["gate"]["sequence"] == 1.0
