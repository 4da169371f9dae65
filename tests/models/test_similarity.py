"""``model_params.similarity=cosine`` (unit vectors over a temperature) for SASRec and the hybrid: the scores are the
hand-computed cosines, every scoring path agrees, the models learn, serving factors them, and models that would
ignore the setting refuse it."""

import pytest
import torch
import torch.nn.functional as F

import semcollab
from semcollab.config import ConfigError
from semcollab.models import build_model
from tests.models.test_alphafuse import ring_table, train_ndcg

SEQS = torch.tensor([[0, 0, 1, 2], [5, 6, 7, 8]])


def test_sasrec_cosine_scores_are_cosines_over_the_temperature(toy_split):
    torch.manual_seed(0)
    m = build_model("sasrec", {"hidden": 16, "max_len": 10, "similarity": "cosine", "temperature": 0.2},
                    toy_split).eval()
    h = m.forward(SEQS)[:, -1]
    table = m.item_emb.weight[: toy_split.n_items + 1]
    want = torch.stack([torch.stack([F.cosine_similarity(h[b], table[i], dim=0) for i in range(1, len(table))])
                        for b in range(2)]) / 0.2
    got = m.score(None, SEQS)
    torch.testing.assert_close(got[:, 1:], want, rtol=1e-5, atol=1e-5)  # float32 cosines in [-5, 5]; col 0 = pad
    assert float(got.detach().abs().max()) <= 1 / 0.2 + 1e-4
    torch.testing.assert_close(m.score_items(None, SEQS, 3, 9), got[:, 3:9])
    # dot (the default) is unchanged: the plain product of state and table
    dot = build_model("sasrec", {"hidden": 16, "max_len": 10}, toy_split).eval()
    dot.load_state_dict(m.state_dict())
    torch.testing.assert_close(dot.score(None, SEQS), dot.forward(SEQS)[:, -1] @ table.T)


@pytest.mark.parametrize("model", ["sasrec", "hybrid"])
def test_cosine_models_learn_on_the_toy_walk(toy_split, tmp_path, model):
    torch.manual_seed(0)
    params = {"hidden": 16, "max_len": 10, "similarity": "cosine", "dropout": 0.1, "attn_dropout": 0.1}
    if model == "hybrid":
        params["item_table"] = str(ring_table(tmp_path / "text.npy", toy_split.n_items))
    before, after = train_ndcg(build_model(model, params, toy_split), toy_split, epochs=15)
    # at least half of the way from the start to a perfect ranking (the hybrid starts high: the ring text
    # already describes the walk)
    assert after - before > 0.5 * (1 - before), (before, after)


def test_hybrid_cosine_mixes_the_two_heads_cosines(toy_split, tmp_path):
    torch.manual_seed(0)
    table = ring_table(tmp_path / "text.npy", toy_split.n_items)
    m = build_model("hybrid", {"item_table": str(table), "hidden": 16, "max_len": 10, "similarity": "cosine",
                               "temperature": 0.1}, toy_split).eval()
    with torch.no_grad():
        m.user_gate.proj.bias.fill_(0.7)  # not the 0.5 start: the weights must show in the mix
    e, s = m.views()
    h = m.forward(SEQS, e)[:, -1]
    q = m.query(h)
    w = m.user_weights(SEQS)[:, -1]
    cos = F.normalize(h, dim=-1) @ F.normalize(e, dim=-1).T
    cos_s = F.normalize(q, dim=-1) @ F.normalize(s, dim=-1).T
    want = ((1 - w) * cos + w * cos_s) / 0.1
    torch.testing.assert_close(m.score(None, SEQS), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m.score_items(None, SEQS, 2, 11), want[:, 2:11], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", ["bert4rec", "fusion", "saerec"])
def test_models_that_score_their_own_way_refuse_cosine(toy_split, model):
    with pytest.raises(ConfigError, match="model_params.similarity='cosine'"):
        build_model(model, {"hidden": 16, "max_len": 10, "similarity": "cosine"}, toy_split)


def test_unknown_similarity_names_the_key(toy_split):
    with pytest.raises(ConfigError, match="similarity"):
        build_model("sasrec", {"similarity": "euclid"}, toy_split)


@pytest.mark.parametrize("model", ["sasrec", "alphafuse", "hybrid", "hybrid-null-space"])
def test_cosine_models_are_served_factored_with_the_models_ranking(toy_dir, toy_split, tmp_path, model):
    pytest.importorskip("fastapi")
    from semcollab.serve.ranker import load_serving_run

    extra = [] if model == "sasrec" else [f"model_params.item_table={ring_table(tmp_path / 't.npy', toy_split.n_items)}"]
    if model != "sasrec" and model != "hybrid":
        extra.append("model_params.null_dim=6")
    if model == "hybrid-null-space":
        model = "hybrid"
        extra.append("model_params.item_view=null_space")
    res = semcollab.run(model=model, dataset="atomic:toy", log=None, overrides=[
        f"data.path={toy_dir}", f"output_dir={tmp_path / 'runs'}", "train.epochs=2", "train.progress=false",
        "model_params.hidden=16", "model_params.similarity=cosine", *extra])
    run = load_serving_run(res.run_dir)
    assert run.factored  # the start-up self-check matched model.score with the unit table
    want = [item for item, _ in semcollab.load_run(res.run_dir).recommend("3", 5)]
    query = {"user": run.user_index("3"), "history": None, "k": 5, "exclude_seen": True, "allow": None, "deny": None}
    got = [run.item_ids[i] for i, _ in run.recommend([query])[0]["items"]]
    assert got == want
