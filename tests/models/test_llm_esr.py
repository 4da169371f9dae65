"""LLM-ESR (issue 33 peer): dual-view (ID + frozen text) SASRec with retrieval-augmented self-distillation."""


import numpy as np
import pytest
import torch

from semcollab.config import ConfigError
from semcollab.models import build_model
from semcollab.models.llm_esr import OwnedWindows, similar_users
from tests.models.test_alphafuse import SEQS, learns_on_ml100k, ring_table, round_trips, train_ndcg


def small(table, **kw) -> dict:
    return {"item_table": str(table), "hidden": 16, "max_len": 10, "distill_users": 3, "dropout": 0.1,
            "attn_dropout": 0.1, **kw}


@pytest.fixture
def table(toy_split, tmp_path):
    return ring_table(tmp_path / "text.npy", toy_split.n_items)


def first_batch(model, split, seed=0):
    builder = model.training_batches(split.train_sequences(), split.n_items)
    return next(builder.epoch(16, np.random.default_rng(seed), "cpu"))


@pytest.mark.parametrize("cross", [True, False])
def test_score_contract_and_padding(toy_split, table, cross):
    m = build_model("llm-esr", small(table, cross_attention=cross), toy_split).eval()
    out = m.score(torch.tensor([0, 1]), SEQS)
    assert out.shape == (2, toy_split.n_items + 1) and torch.isfinite(out).all()
    assert m.item_table().shape == (toy_split.n_items + 1, 32)  # [ID | adapter(text)]
    padded = torch.cat([torch.zeros(2, 6, dtype=torch.long), SEQS], 1)
    torch.testing.assert_close(m.score(None, padded), out)


def test_semantic_view_is_frozen_and_the_id_view_starts_from_its_pca(toy_split, table):
    torch.manual_seed(0)
    m = build_model("llm-esr", small(table), toy_split)
    sem = m.semantic.clone()
    assert "semantic" not in dict(m.named_parameters()) and not sem[0].any()
    torch.testing.assert_close(sem[1:].norm(dim=-1), torch.ones(toy_split.n_items))
    # PCA init: the ID rows are centred, their first coordinate carries the most variance
    ids = m.item_emb.weight[1:toy_split.n_items + 1].detach()
    assert ids.mean(0).abs().max() < 1e-5 and ids.var(0).argmax() == 0
    adapter_before = m.adapter[0].weight.clone()
    batch = first_batch(m, toy_split)
    m.set_loss("ce")
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        m.loss(batch).backward()
        opt.step()
    assert torch.equal(m.semantic, sem)
    assert not torch.equal(m.adapter[0].weight, adapter_before)


def test_self_distillation_is_zero_when_off_and_changes_the_loss_when_on(toy_split, table):
    on = build_model("llm-esr", small(table, distill_weight=0.5), toy_split).eval()
    off = build_model("llm-esr", small(table, distill_weight=0.0), toy_split).eval()
    off.load_state_dict(on.state_dict())
    for m in (on, off):
        m.set_loss("ce")
    batch = first_batch(on, toy_split)
    assert "owners" in batch and "owners" not in first_batch(off, toy_split)
    plain = {k: v for k, v in batch.items() if k != "owners"}
    distill = on.distill_loss(on.encode(batch["seqs"])[:, -1], batch["owners"][:, 0])
    assert distill.item() > 0
    torch.testing.assert_close(off.loss(plain), on.loss(batch) - 0.5 * distill)
    with pytest.raises(RuntimeError, match="owners"):
        on.loss(plain)


def test_windows_know_their_users_and_similar_users_exclude_themselves(toy_split):
    seqs = toy_split.train_sequences()
    b = OwnedWindows(seqs, toy_split.n_items, 4)
    for w, u in zip(b.windows, b.owners):  # every window is a slice of its owner's history
        real = w[w > 0].tolist()
        s = list(seqs[u])
        assert any(s[i:i + len(real)] == real for i in range(len(s)))
    vecs = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.0, 0.0]])
    sim = similar_users(vecs, 1, chunk=2)
    assert sim[:, 0].tolist() == [1, 0, 3, 2, 4]  # the user without a vector retrieves only itself


def test_seeded_runs_are_identical(toy_split, table):
    def one():
        torch.manual_seed(3)
        m = build_model("llm-esr", small(table), toy_split)
        train_ndcg(m, toy_split, epochs=2, seed=3)
        return m.eval().score(None, SEQS)

    assert torch.equal(one(), one())


def test_config_errors_name_the_key(toy_split, table):
    with pytest.raises(ConfigError, match="model_params.cross_heads"):
        build_model("llm-esr", small(table, cross_heads=3), toy_split)
    with pytest.raises(ConfigError, match="model_params.distill_weight"):
        build_model("llm-esr", small(table, distill_weight=-1), toy_split)


def test_epoch_targets_are_the_similar_users_mean_state_without_dropout_refreshed_each_epoch(toy_split, table):
    torch.manual_seed(0)
    m = build_model("llm-esr", small(table, distill_weight=0.5, distill_targets="epoch"), toy_split)
    m.set_loss("ce")
    builder = m.training_batches(toy_split.train_sequences(), toy_split.n_items)
    batch = next(builder.epoch(16, np.random.default_rng(0), "cpu"))
    m.train()
    owners = batch["owners"][:, 0]
    states = m.encode(batch["seqs"])[:, -1]
    got = m.distill_loss(states, owners)
    assert m.training  # the targets were encoded in eval mode and the mode restored
    with torch.no_grad():
        m.eval()
        by_hand = m.encode(m.histories[m.sim_users[owners].reshape(-1)])[:, -1].view(len(owners), 3, -1).mean(1)
        m.train()
    torch.testing.assert_close(got, torch.nn.functional.mse_loss(states, by_hand), rtol=1e-5, atol=1e-6)
    cached = m.epoch_targets()
    with torch.no_grad():
        m.item_emb.weight.add_(1.0)  # new weights: the cache holds until the next epoch starts
    assert m.epoch_targets() is cached
    next(builder.epoch(16, np.random.default_rng(1), "cpu"))
    assert not torch.equal(m.epoch_targets(), cached)
    with pytest.raises(ConfigError, match="model_params.distill_targets"):
        build_model("llm-esr", small(table, distill_targets="step"), toy_split)


@pytest.mark.parametrize("distill_weight, targets", [(0.0, "batch"), (0.1, "batch"), (0.1, "epoch")])
def test_learns_on_the_toy_walk(toy_split, table, distill_weight, targets):
    torch.manual_seed(1)
    m = build_model("llm-esr", small(table, distill_weight=distill_weight, distill_targets=targets), toy_split)
    before, after = train_ndcg(m, toy_split, epochs=15, seed=1)
    # measured: 0.10 -> 0.93 (off) / 0.94 (on); other seeds start higher (0.59 with seed 0: the ID view starts as
    # the PCA of the ring-shaped text) and end at 0.79-0.97
    assert after > before + 0.5, (before, after)


def test_run_folder_round_trip(toy_dir, toy_split, tmp_path):
    table = ring_table(tmp_path / "text.npy", toy_split.n_items)
    round_trips("llm-esr", "LLMESR", small(table), toy_dir, tmp_path)


@pytest.mark.slow
def test_learns_on_ml100k_with_minilm(ml100k_dir, monkeypatch):
    learns_on_ml100k("llm-esr", {"distill_users": 3}, ml100k_dir, monkeypatch, epochs=2)
