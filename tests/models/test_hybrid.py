"""semcollab's hybrid model (issue 33): contract, each flag does what it says, frozen text, it learns, serve/report."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F

import semcollab
from semcollab.config import ConfigError, EvalConfig, TrainConfig, load_config
from semcollab.models import build_model
from semcollab.models.base import draw_negatives, next_item_loss
from semcollab.models.hybrid import candidate_logits
from semcollab.models.llm_esr import pca_coordinates
from semcollab.train.trainer import fit
from tests.models.test_alphafuse import learns_on_ml100k, ring_table, train_ndcg

SEQS = torch.tensor([[0, 0, 1, 2], [5, 6, 7, 8]])


def small(table, **kw) -> dict:
    return {"item_table": str(table), "hidden": 16, "max_len": 10, "dropout": 0.1, "attn_dropout": 0.1, **kw}


def first_batch(model, split, seed=0):
    return next(model.training_batches(split.train_sequences(), split.n_items).epoch(16, np.random.default_rng(seed),
                                                                                        "cpu"))


def steps(model, split, n=3, loss="sampled_ce"):
    model.set_loss(loss, 8)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    batch = first_batch(model, split)
    for _ in range(n):
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()


@pytest.fixture
def table(toy_split, tmp_path):
    return ring_table(tmp_path / "text.npy", toy_split.n_items)


@pytest.mark.parametrize("flags", [{}, {"semantic_head": False, "gate": "item", "semantic_loss": 0,
                                        "tail_distill": 0}, {"gate": "none", "adapter": "linear"}])
def test_score_contract_padding_and_bounded_scorer(toy_split, table, flags):
    torch.manual_seed(0)
    m = build_model("hybrid", small(table, **flags), toy_split)
    steps(m, toy_split)  # trained gates, not their 0.5 start
    m.eval()
    out = m.score(torch.tensor([0, 1]), SEQS)
    assert out.shape == (2, toy_split.n_items + 1) and torch.isfinite(out).all()
    width = 32 if flags.get("semantic_head", True) else 16
    assert m.item_table().shape == (toy_split.n_items + 1, width) and not m.item_table()[0].any()
    padded = torch.cat([torch.zeros(2, 6, dtype=torch.long), SEQS], 1)
    torch.testing.assert_close(m.score(None, padded), out)
    torch.testing.assert_close(m.score_items(None, SEQS, 5, 17), out[:, 5:17])


def test_gate_none_is_the_fixed_half_mix_and_the_gates_start_there(toy_split, table):
    torch.manual_seed(0)
    full = build_model("hybrid", small(table), toy_split).eval()
    fixed = build_model("hybrid", small(table, gate="none"), toy_split).eval()
    missing, unexpected = fixed.load_state_dict(full.state_dict(), strict=False)
    assert not missing and sorted({k.split(".")[0] for k in unexpected}) == ["item_gate", "user_gate"]
    assert torch.equal(fixed.item_gates(), torch.full((toy_split.n_items + 1, 16), 0.5))
    e, s = fixed.views()
    torch.testing.assert_close(e, 0.5 * fixed.item_emb.weight + 0.5 * s, rtol=0, atol=0)
    assert torch.equal(fixed.user_weights(SEQS), torch.full((2, 4, 1), 0.5))
    # zero-initialised gates: the full model at init IS the fixed mix
    torch.testing.assert_close(full.score(None, SEQS), fixed.score(None, SEQS))
    steps(full, toy_split)
    assert full.item_gates().std() > 0  # trained: items differ by popularity


def test_item_gate_sees_popularity_and_user_gate_sees_history_length(toy_split, table):
    torch.manual_seed(0)
    m = build_model("hybrid", small(table), toy_split)
    item_only = build_model("hybrid", small(table, gate="item"), toy_split)
    item_only.load_state_dict(m.state_dict())
    with torch.no_grad():
        for gate in (m.item_gate, m.user_gate, item_only.user_gate):
            gate.proj.weight.fill_(2.0)
    g = m.item_gates()[:, 0]
    order = torch.argsort(m.item_feature[1:])
    assert (g[1:][order].diff() >= 0).all() and g[1:].max() > g[1:].min()  # monotone in log popularity
    w = m.user_weights(SEQS)[..., 0]
    assert w[1, 3] > w[1, 0] and w[0, 3] == w[1, 1]  # grows with the history length, not with padding
    flat = item_only.user_weights(SEQS)
    assert torch.equal(flat, torch.full_like(flat, 0.5))  # gate=item: a constant, whatever the history


def test_text_pca_initialises_the_id_table(toy_split, table):
    torch.manual_seed(0)
    m = build_model("hybrid", small(table), toy_split)
    text = F.normalize(torch.as_tensor(np.load(table)[1:]), dim=-1).numpy()
    pca = torch.as_tensor(pca_coordinates(text, 16), dtype=torch.float32)
    ids = m.item_emb.weight[1:].detach()
    torch.testing.assert_close(ids, pca * (0.02 / pca.std(correction=0)), atol=1e-6, rtol=1e-4)
    assert not m.item_emb.weight[0].any()
    torch.manual_seed(0)
    rand = build_model("hybrid", small(table, id_init="random"), toy_split)
    assert abs(float(rand.item_emb.weight[1:].detach().std()) - 0.02) < 0.004
    assert (rand.item_emb.weight[1:] @ pca.T).diagonal().abs().mean() < (ids @ pca.T).diagonal().abs().mean() / 3


def test_text_stays_frozen_while_adapter_ids_and_gates_train(toy_split, table):
    torch.manual_seed(0)
    m = build_model("hybrid", small(table), toy_split)
    sem = m.semantic.clone()
    assert "semantic" not in dict(m.named_parameters()) and not sem[0].any()
    torch.testing.assert_close(sem[1:].norm(dim=-1), torch.ones(toy_split.n_items))
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    steps(m, toy_split)
    assert torch.equal(m.semantic, sem)
    for name in ("adapter.linear.weight", "adapter.branch.2.weight", "item_emb.weight", "item_gate.proj.weight",
                 "user_gate.proj.weight", "query.weight"):
        assert not torch.equal(dict(m.named_parameters())[name], before[name]), name


def test_views_of_some_rows_equal_the_full_views_there(toy_split, table):
    torch.manual_seed(0)
    m = build_model("hybrid", small(table), toy_split)
    rows = torch.tensor([2, 5, 6, 30])
    for part, full in zip(m.views(rows), m.views()):
        torch.testing.assert_close(part[rows], full[rows], rtol=0, atol=0)
        keep = torch.ones(len(full), dtype=torch.bool)
        keep[rows] = False
        assert not part[keep].any() and not full[0].any()


def test_adapter_flag(toy_split, table):
    lin = build_model("hybrid", small(table, adapter="linear"), toy_split)
    mlp = build_model("hybrid", small(table), toy_split)
    assert lin.adapter.branch is None and mlp.adapter.branch is not None
    with torch.no_grad():  # the mlp is the linear map plus its branch
        mlp.adapter.branch[2].weight.zero_()
        mlp.adapter.branch[2].bias.zero_()
    mlp.adapter.linear.load_state_dict(lin.adapter.linear.state_dict())
    torch.testing.assert_close(mlp.semantic_table(), lin.semantic_table())


@pytest.mark.parametrize("loss", ["sampled_ce", "ce", "bce"])
def test_loss_terms_and_tail_distillation(toy_split, table, loss):
    torch.manual_seed(0)
    on = build_model("hybrid", small(table, tail_distill=0.5, semantic_loss=0.3), toy_split).eval()
    off = build_model("hybrid", small(table, tail_distill=0.0, semantic_loss=0.3), toy_split).eval()
    off.load_state_dict(on.state_dict())
    batch = first_batch(on, toy_split)
    assert on.tail[batch["targets"][batch["targets"] > 0]].any()
    for m in (on, off):
        m.set_loss(loss, 8)
    torch.manual_seed(1)
    terms = on.loss_terms(batch)
    torch.manual_seed(1)
    plain = off.loss_terms(batch)
    assert set(terms) == {"next_item", "semantic", "tail_distill"} and set(plain) == {"next_item", "semantic"}
    assert terms["tail_distill"].item() > 0
    torch.testing.assert_close(terms["next_item"], plain["next_item"])
    # the teacher is detached: with the head's share of the fused score at 0, the distillation term sends no
    # gradient into the semantic head's query (the student alone learns)
    with torch.no_grad():
        on.user_gate.proj.bias.fill_(-1e4)
    torch.manual_seed(1)
    on.loss_terms(batch)["tail_distill"].backward()
    assert on.query.weight.grad is None or not on.query.weight.grad.any()
    assert on.item_emb.weight.grad.any()


@pytest.mark.parametrize("flags", [{}, {"item_view": "null_space", "null_dim": 6, "similarity": "cosine"},
                                   {"gate": "none", "tail_distill": 2.0}])
def test_shared_logit_terms_equal_the_general_terms(toy_split, table, flags):
    """The sampled-softmax fast path (each head's logits once, fused = their w-mix) against the path that scores
    every term on its own: the same terms and gradients up to float32 rounding."""
    torch.manual_seed(0)
    m = build_model("hybrid", small(table, **flags), toy_split)
    steps(m, toy_split)  # trained gates, not their 0.5 start
    m.set_loss("sampled_ce", 8)
    m.eval()  # no dropout: both paths see the same states
    batch = first_batch(m, toy_split, seed=3)
    assert m.tail[batch["targets"][batch["targets"] > 0]].any()
    neg = torch.tensor([3, 7, 11, 2, 5, 13, 17, int(batch["targets"][batch["targets"] > 0][0])])  # one is a target
    grads = []
    for path in (m.general_terms, m.shared_logit_terms):
        m.zero_grad()
        terms = path(batch, neg)
        sum(terms.values()).backward()
        grads.append((terms, {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}))
    (general, g_general), (shared, g_shared) = grads
    assert set(general) == set(shared) == {"next_item", "semantic", "tail_distill"}
    for k in general:
        torch.testing.assert_close(shared[k], general[k], rtol=1e-5, atol=1e-6)
    assert set(g_general) == set(g_shared)
    for n in g_general:
        torch.testing.assert_close(g_shared[n], g_general[n], rtol=1e-4, atol=1e-6, msg=n)
    m.set_loss("sampled_ce", 8)
    torch.manual_seed(5)
    via_loss = m.loss(batch)
    torch.manual_seed(5)
    torch.testing.assert_close(via_loss, sum(m.shared_logit_terms(batch, draw_negatives("sampled_ce", batch["targets"],
                                                                                      m.n_items, 8)).values()))


def test_candidate_logits_are_the_losses_logits(toy_split, table):
    torch.manual_seed(0)
    m = build_model("hybrid", small(table), toy_split).eval()
    h, t = torch.randn(5, 32), torch.tensor([1, 4, 9, 2, 30])
    tab = m.item_table().detach()
    for loss in ("ce", "sampled_ce"):
        neg = torch.tensor([4, 7, 11]) if loss == "sampled_ce" else None
        logits = candidate_logits(h, t, tab, neg, loss, torch.ones(5, dtype=torch.bool))
        want = next_item_loss(h, t, tab, loss, 3, negatives=neg)
        target = t if loss == "ce" else torch.zeros_like(t)
        torch.testing.assert_close(F.cross_entropy(logits, target), want)


def test_config_errors_name_the_key(toy_split, table):
    with pytest.raises(ConfigError, match="model_params.gate"):
        build_model("hybrid", small(table, semantic_head=False, semantic_loss=0, tail_distill=0), toy_split)
    with pytest.raises(ConfigError, match="model_params.tail_distill"):
        build_model("hybrid", small(table, semantic_head=False, gate="item", semantic_loss=0), toy_split)
    with pytest.raises(ConfigError, match="model_params.adapter"):
        build_model("hybrid", small(table, adapter="deep"), toy_split)
    zeros = table.with_name("zeros.npy")
    np.save(zeros, np.zeros_like(np.load(table)))
    with pytest.raises(ConfigError, match="every item text vector is zero"):
        build_model("hybrid", small(zeros), toy_split)


def test_seeded_runs_are_identical(toy_split, table):
    def one():
        torch.manual_seed(3)
        m = build_model("hybrid", small(table), toy_split)
        fit(m, toy_split, TrainConfig(epochs=2, lr=0.01, batch_size=16, progress=False, seed=3,
                                      loss="sampled_ce", neg_samples=8), EvalConfig(ks=[10]), log=None)
        return m.eval().score(None, SEQS)

    assert torch.equal(one(), one())


def test_learns_on_the_toy_walk(toy_split, table):
    # text that says nothing (random vectors): everything must come from training
    noise = table.with_name("noise.npy")
    np.save(noise, np.random.default_rng(0).normal(size=np.load(table).shape).astype(np.float32))
    torch.manual_seed(0)
    m = build_model("hybrid", small(noise), toy_split)
    before, after = train_ndcg(m, toy_split, epochs=15)
    assert after > before + 0.2 and after > 2 * before, (before, after)
    # informative text (the ring) and its PCA in the ID table: a head start, and training still adds to it
    torch.manual_seed(0)
    m = build_model("hybrid", small(table), toy_split)
    before_text, after_text = train_ndcg(m, toy_split, epochs=15)
    assert before_text > before + 0.2 and after_text > before_text + 0.05, (before_text, after_text)


def test_run_folder_serve_and_report(toy_dir, toy_split, tmp_path):
    table = ring_table(tmp_path / "text.npy", toy_split.n_items)
    res = semcollab.run(model="hybrid", dataset="atomic:toy", log=None, overrides=[
        f"data.path={toy_dir}", f"output_dir={tmp_path / 'runs'}", "train.epochs=2", "train.progress=false",
        "train.loss=sampled_ce", "train.neg_samples=8", *[f"model_params.{k}={v}" for k, v in small(table).items()]])
    run = semcollab.load_run(res.run_dir)
    assert type(run.model).__name__ == "Hybrid"
    torch.testing.assert_close(run.model.eval().score(None, SEQS), res.model.eval().score(None, SEQS))
    want = run.recommend("3", 5)
    assert len(want) == 5
    from semcollab.report.html import write_report

    page = write_report([res.run_dir], tmp_path / "r.html").read_text()
    assert "<td>hybrid</td>" in page
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from semcollab.serve import create_app

    with TestClient(create_app([str(res.run_dir)])) as client:
        info = client.get("/v1/models").json()["models"][0]
        assert info["model"] == "hybrid" and info["factored"] is True  # its serving_factors passed the self-check
        got = client.post("/v1/recommend", json={"user_id": "3", "k": 5})
        assert got.status_code == 200, got.text
        items = got.json()["items"]
        assert [i["id"] for i in items] == [item for item, _ in want]  # the same top 5 as `semcollab recommend`
        for i, (_, score) in zip(items, want):
            assert i["score"] == pytest.approx(score, rel=1e-5, abs=1e-5)  # float32 scores


@pytest.mark.slow
def test_learns_on_ml100k_with_minilm(ml100k_dir, monkeypatch):
    learns_on_ml100k("hybrid", {}, ml100k_dir, monkeypatch, epochs=3)


def test_null_space_view_is_frozen_whitened_text_plus_a_gated_id_in_the_null_directions(toy_split, table):
    from semcollab.models.alphafuse import spectral_coordinates

    torch.manual_seed(0)
    m = build_model("hybrid", small(table, item_view="null_space", null_dim=6, similarity="cosine"), toy_split)
    coords = torch.as_tensor(spectral_coordinates(np.load(table), 16, True, "t")[0], dtype=torch.float32)
    torch.testing.assert_close(m.semantic, coords)  # AlphaFuse's whitened coordinates, the same function
    assert m.adapter is None and m.item_emb.weight.shape == (toy_split.n_items + 1, 6)
    assert not m.item_emb.weight.any()  # id_init=auto: zeros in the null space
    steps(m, toy_split)
    e, s = m.views()
    torch.testing.assert_close(s, coords, rtol=0, atol=0)  # frozen through training
    torch.testing.assert_close(e[:, :10], s[:, :10], rtol=0, atol=0)  # the ID never touches the semantic directions
    g = m.item_gates()
    torch.testing.assert_close(e[1:, 10:], s[1:, 10:] + (1 - g[1:]) * m.item_emb.weight[1:])
    assert m.item_emb.weight[1:].abs().sum() > 0 and g.std() > 0  # the ID part and its popularity gate trained


def test_null_space_config_errors_name_the_key(toy_split, table):
    with pytest.raises(ConfigError, match="null_dim"):
        build_model("hybrid", small(table, item_view="null_space", null_dim=16), toy_split)
    with pytest.raises(ConfigError, match="id_init"):
        build_model("hybrid", small(table, item_view="null_space", null_dim=6, id_init="text_pca"), toy_split)


def test_null_space_view_learns_on_the_toy_walk(toy_split, table):
    torch.manual_seed(0)
    m = build_model("hybrid", small(table, item_view="null_space", null_dim=6, similarity="cosine"), toy_split)
    before, after = train_ndcg(m, toy_split, epochs=15)
    assert after - before > 0.5 * (1 - before), (before, after)


def test_the_hybrids_own_pop_correction_key_is_read_as_eval_pop_correction(toy_split):
    """Runs saved before eval.pop_correction carry model_params.pop_correction: the same correction, one mechanism
    (the wrapper is tested in tests/models/test_pop_correction.py)."""
    cfg = load_config(None, ["model=hybrid", "model_params.pop_correction=0.4", "model_params.hidden=16"])
    assert cfg.eval.pop_correction == 0.4 and cfg.model_params == {"hidden": "16"}
    same = load_config(None, ["model=hybrid", "model_params.pop_correction=0.4", "eval.pop_correction=0.4"])
    assert same.eval.pop_correction == 0.4 and "pop_correction" not in same.model_params
    assert load_config(None, ["model=hybrid", "model_params.pop_correction=0"]).eval.pop_correction == 0
    with pytest.raises(ConfigError, match="'model_params.pop_correction' must be a finite number >= 0"):
        load_config(None, ["model=hybrid", "model_params.pop_correction=-0.1"])
    with pytest.raises(ConfigError, match="'model_params.pop_correction' expects a number"):
        load_config(None, ["model=hybrid", "model_params.pop_correction=lots"])
    with pytest.raises(ConfigError, match="disagree; keep eval.pop_correction"):
        load_config(None, ["model=hybrid", "model_params.pop_correction=0.4", "eval.pop_correction=0.2"])
    with pytest.raises(ConfigError, match="unknown config key"):  # only the hybrid ever had the key
        build_model("sasrec", {"pop_correction": 0.4}, toy_split)
