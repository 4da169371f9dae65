"""A frozen LM item table (ReaEmb / LLMEmb style) as the item representation of SASRec, GRU4Rec, BERT4Rec."""

import json

import numpy as np
import pytest
import torch

from semcollab.config import ConfigError
from semcollab.data.batches import BatchBuilder
from semcollab.models import build_model
from semcollab.models.text_table import item_ids_sha256, load_item_table

MODELS = ["sasrec", "gru4rec", "bert4rec"]


def write_table(path, n_items, d=24, seed=0, meta=None):
    """Items on a ring: item i's vector is close to item i+1's (the toy data's users walk items in order)."""
    rng = np.random.default_rng(seed)
    angle = 2 * np.pi * np.arange(1, n_items + 1) / n_items
    base = np.stack([np.cos(angle), np.sin(angle)], 1) @ rng.normal(size=(2, d))
    table = np.zeros((n_items + 1, d), dtype=np.float32)
    table[1:] = base + 0.05 * rng.normal(size=(n_items, d))
    np.save(path, table)
    if meta is not None:
        path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def params(name, table=None, mode="replace", **kw):
    p = {"hidden": 16, "heads": 1} if name != "gru4rec" else {"hidden": 16}
    if name == "bert4rec":
        p["mask_prob"] = 0.5
    if table is not None:
        p.update(item_table=str(table), table_pca=8, table_mode=mode, table_hidden=32)
    p.update(kw)
    return p


def train_losses(model, split, epochs=15, lr=1e-2):
    model.set_loss("auto")
    b = BatchBuilder(model.batch_kind, split.train_sequences(), split.n_items, model.max_len,
                     getattr(model.cfg, "mask_prob", 0.2), getattr(model, "mask_token", None))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(epochs):
        tot = 0.0
        for batch in b.epoch(16, rng, "cpu"):
            loss = model.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item()
        losses.append(tot)
    return losses


@pytest.mark.parametrize("mode", ["replace", "add"])
@pytest.mark.parametrize("name", MODELS)
def test_trains_with_an_item_table(name, mode, toy_split, tmp_path):
    table = write_table(tmp_path / "t.npy", toy_split.n_items)
    torch.manual_seed(0)
    model = build_model(name, params(name, table, mode), toy_split)
    assert model.text_table is not None and model.text_table.text.shape == (toy_split.n_items + 1, 8)
    assert not model.text_table.text[0].any() and not model.text_table.text.requires_grad
    rep = model.item_table()
    assert rep.shape == (toy_split.n_items + 1, 16) and not rep[0].any()
    # BERT4Rec's random masking makes it learn slower and noisier (as in test_models.test_loss_falls)
    losses = train_losses(model, toy_split, epochs=30 if name == "bert4rec" else 15)
    assert np.mean(losses[-3:]) < 0.85 * losses[0], [round(x, 2) for x in losses]
    out = model.eval().score(torch.tensor([0, 1]), torch.tensor([[0, 0, 1, 2], [5, 6, 7, 8]]))
    assert out.shape == (2, toy_split.n_items + 1) and torch.isfinite(out).all()
    # the frozen PCA table is part of the saved weights, so a reloaded run scores the same
    assert "text_table.text" in model.state_dict()


@pytest.mark.parametrize("name", MODELS)
def test_replace_vs_add(name, toy_split, tmp_path):
    table = write_table(tmp_path / "t.npy", toy_split.n_items)
    n = toy_split.n_items
    batch_seqs = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    grads = {}
    for mode in ("replace", "add"):
        torch.manual_seed(0)
        m = build_model(name, params(name, table, mode, dropout=0.0, table_dropout=0.0), toy_split).eval()
        ids, adapter = m.item_emb.weight[: n + 1].detach(), m.text_table.adapter(m.text_table.text[1:]).detach()
        rep = m.item_table().detach()
        want = adapter + (ids[1:] if mode == "add" else 0)
        torch.testing.assert_close(rep[1:], want)
        m.score(None, batch_seqs).sum().backward()
        grads[mode] = m.item_emb.weight.grad
    # replace: the ID rows of the items take no part; add: they do (input and output)
    assert grads["replace"] is None or not grads["replace"][1:n + 1].any()
    assert grads["add"][1:n + 1].abs().sum() > 0


@pytest.mark.parametrize("name", MODELS)
def test_bad_tables_raise_naming_the_file(name, toy_split, tmp_path):
    n = toy_split.n_items
    short = write_table(tmp_path / "short.npy", n - 1)
    with pytest.raises(ConfigError, match=rf"short\.npy.*\({n}, 24\).*n_items \+ 1 = {n + 1}"):
        build_model(name, params(name, short), toy_split)
    bad = np.load(write_table(tmp_path / "nan.npy", n))
    bad[3, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ConfigError, match=r"nan\.npy.*NaN.*rows \[3\]"):
        build_model(name, params(name, tmp_path / "nan.npy"), toy_split)
    with pytest.raises(ConfigError, match=r"no table file.*missing\.npy"):
        build_model(name, params(name, tmp_path / "missing.npy"), toy_split)
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(n + 1, dtype=np.float32))
    with pytest.raises(ConfigError, match=r"flat\.npy has shape"):
        build_model(name, params(name, flat), toy_split)
    # a table made for other items (its meta's item-id hash differs) is refused
    other = write_table(tmp_path / "other.npy", n, meta={"item_ids_sha256": item_ids_sha256(["x"] * n)})
    with pytest.raises(ConfigError, match="other items"):
        build_model(name, params(name, other), toy_split)
    good = write_table(tmp_path / "good.npy", n, meta={"item_ids_sha256": item_ids_sha256(toy_split.item_vocab.ids)})
    assert build_model(name, params(name, good), toy_split).text_table is not None
    with pytest.raises(ConfigError, match="table_mode"):
        build_model(name, params(name, good, mode="concat"), toy_split)


def test_a_folder_means_its_item_table_npy(toy_split, tmp_path):
    write_table(tmp_path / "item_table.npy", toy_split.n_items)
    assert load_item_table(str(tmp_path), toy_split.n_items).shape == (toy_split.n_items + 1, 24)
    m = build_model("sasrec", params("sasrec", tmp_path), toy_split)
    assert m.text_table.pca_dim == 8
    # PCA is clipped to what the table allows
    m = build_model("gru4rec", params("gru4rec", tmp_path, table_pca=512), toy_split)
    assert m.text_table.pca_dim == 24


def test_other_models_refuse_an_item_table(toy_split, tmp_path):
    from semcollab.models.sasrec_ctr import SASRecCTR, SASRecCTRConfig

    table = str(write_table(tmp_path / "t.npy", toy_split.n_items))
    with pytest.raises(ConfigError, match="not by SASRec"):
        SASRecCTR(toy_split.n_users, toy_split.n_items, SASRecCTRConfig(item_table=table))


# parameter counts of the models before item tables existed (SASRec/GRU4Rec/BERT4Rec(10 users, 30 items),
# default configs), read off the previous version of the code
OLD_COUNTS = {"sasrec": 105280, "gru4rec": 31104, "bert4rec": 105344}


@pytest.mark.parametrize("name", MODELS)
def test_no_table_keeps_the_old_model(name, toy_split, tmp_path):
    from semcollab.models import REGISTRY

    cls, cfg_cls = REGISTRY[name]
    torch.manual_seed(0)
    m = cls(10, 30, cfg_cls())
    assert m.text_table is None and sum(p.numel() for p in m.parameters()) == OLD_COUNTS[name]
    assert not any("text_table" in k for k in m.state_dict())
    m.eval()
    seqs = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    if name == "bert4rec":
        masked = torch.cat([seqs, torch.full_like(seqs[:, :1], m.mask_token)], 1)
        old = m.forward(masked)[:, -1] @ m.item_emb.weight[:31].T
    elif name == "sasrec":
        old = m.forward(seqs)[:, -1] @ m.item_emb.weight[:31].T
    else:
        old = m.forward(seqs)[:, -1] @ m.item_emb.weight.T
    torch.testing.assert_close(m.score(None, seqs), old, rtol=0, atol=0)
    # with a table, the ID-side weights are drawn exactly as without one (the adapter is created last)
    table = write_table(tmp_path / "t.npy", toy_split.n_items)
    torch.manual_seed(0)
    plain = build_model(name, params(name), toy_split)
    torch.manual_seed(0)
    with_table = build_model(name, params(name, table), toy_split)
    ref = plain.state_dict()
    for k, v in with_table.state_dict().items():
        if not k.startswith("text_table."):
            assert torch.equal(v, ref[k]), k


@pytest.mark.parametrize("mode", ["replace", "add"])
def test_scoring_reuses_the_table_until_a_weight_changes(mode, toy_split, tmp_path):
    """Evaluation (eval mode, no gradient) computes the adapter once per weight state, bit for bit the
    fresh result; an optimizer step, a state-dict load or training mode never see a stale table."""
    table = write_table(tmp_path / "t.npy", toy_split.n_items)
    torch.manual_seed(0)
    model = build_model("sasrec", params("sasrec", table, mode), toy_split).eval()
    calls = []
    model.text_table.adapter.register_forward_hook(lambda *a: calls.append(1))
    seqs, users = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]]), torch.tensor([0, 1])
    with torch.no_grad():
        first = model.score(users, seqs)
        again = model.score(users, seqs)
    assert len(calls) == 1 and torch.equal(first, again)
    with torch.no_grad():  # a fresh model with the same weights computes the same scores
        fresh = build_model("sasrec", params("sasrec", table, mode), toy_split).eval()
        fresh.load_state_dict(model.state_dict())
        assert torch.equal(fresh.score(users, seqs), first)
    model.train()  # a training step: dropout on and gradients, so no reuse, then the weights move
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.score(users, seqs).sum().backward()
    opt.step()
    assert len(calls) == 2
    model.eval()
    with torch.no_grad():
        moved = model.score(users, seqs)
    assert len(calls) == 3 and not torch.equal(moved, first)
    with torch.no_grad():
        model.load_state_dict(fresh.state_dict())  # back to the first weights, copied in place
        assert torch.equal(model.score(users, seqs), first) and len(calls) == 4
    if mode == "add":  # the ID rows are an input too
        with torch.no_grad():
            model.item_emb.weight[1:].add_(1.0)
            assert not torch.equal(model.score(users, seqs), first) and len(calls) == 5


def test_a_model_built_under_inference_mode_still_scores(toy_split, tmp_path):
    """Inference tensors keep no version counter: such a table is simply recomputed, never cached."""
    table = write_table(tmp_path / "t.npy", toy_split.n_items)
    with torch.inference_mode():
        model = build_model("sasrec", params("sasrec", table), toy_split).eval()
        seqs = torch.tensor([[0, 1, 2, 3]])
        assert torch.equal(model.score(None, seqs), model.score(None, seqs))


def test_batch_item_rows_and_negatives_by_hand():
    from semcollab.models.base import batch_item_rows, draw_negatives

    # 6 = BERT4Rec's [MASK] for 5 items, 0 = padding: neither is an item row
    rows = batch_item_rows(5, torch.tensor([[0, 3, 6], [0, 0, 5]]), torch.tensor([[2, 0, 3]]), torch.tensor([5, 1]))
    assert rows.tolist() == [1, 2, 3, 5]
    targets = torch.tensor([[0, 4, 2], [0, 0, 1]])
    assert draw_negatives("ce", targets, 5, 7) is None
    torch.manual_seed(3)
    bce = draw_negatives("bce", targets, 5, 7)
    assert bce.shape == (3, 7) and bce.min() >= 1 and bce.max() <= 5  # one row per non-padding target
    shared = draw_negatives("sampled_ce", targets, 5, 7)
    assert shared.shape == (7,) and shared.min() >= 1 and shared.max() <= 5


def _a_batch(model, split):
    b = BatchBuilder(model.batch_kind, split.train_sequences(), split.n_items, model.max_len,
                     getattr(model.cfg, "mask_prob", 0.2), getattr(model, "mask_token", None))
    return next(iter(b.epoch(1, np.random.default_rng(0), "cpu")))  # one user: a few of the toy items


@pytest.mark.parametrize("loss", ["sampled_ce", "bce"])
@pytest.mark.parametrize("mode", ["replace", "add"])
@pytest.mark.parametrize("name", MODELS)
def test_a_sampled_loss_builds_only_the_rows_it_reads(name, mode, loss, toy_split, tmp_path):
    """With sampled negatives the adapter runs over the batch's items and negatives only; the loss and every
    gradient equal those of the whole-catalogue table with the same negatives."""
    from semcollab.models.base import batch_item_rows, draw_negatives, next_item_loss

    if name == "bert4rec" and loss == "bce":
        pytest.skip("BERT4Rec has no bce loss")
    table = write_table(tmp_path / "t.npy", toy_split.n_items)
    torch.manual_seed(0)
    model = build_model(name, params(name, table, mode, dropout=0.0, attn_dropout=0.0, table_dropout=0.0)
                        if name != "gru4rec" else params(name, table, mode, dropout=0.0, table_dropout=0.0),
                        toy_split).train()
    model.set_loss(loss, neg_samples=2)
    batch = _a_batch(model, toy_split)
    seen = []
    model.text_table.adapter.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    torch.manual_seed(7)
    fast = model.loss(batch)
    fast.backward()
    fast_grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    torch.manual_seed(7)
    neg = draw_negatives(loss, batch["targets"], toy_split.n_items, 2)
    want_rows = batch_item_rows(toy_split.n_items, batch["seqs"], batch["targets"], neg)
    assert seen == [len(want_rows)] and len(want_rows) < toy_split.n_items
    full = model.item_table()
    inputs = full if name == "gru4rec" else model.input_table(full)
    ref = next_item_loss(model.forward(batch["seqs"], inputs), batch["targets"], full, loss, 2, negatives=neg)
    ref.backward()
    torch.testing.assert_close(fast, ref)
    ref_grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert fast_grads.keys() == ref_grads.keys() and any(k.startswith("text_table.") for k in ref_grads)
    for k in ref_grads:
        torch.testing.assert_close(fast_grads[k], ref_grads[k], msg=k)


@pytest.mark.parametrize("name", MODELS)
def test_an_id_model_draws_its_negatives_as_before(name, toy_split):
    """Without a table the loss is the old one, random stream included: negatives drawn inside the loss,
    after the forward pass (so ID runs made before the row-subset path re-run bit for bit)."""
    from semcollab.models.base import next_item_loss

    torch.manual_seed(0)
    model = build_model(name, params(name), toy_split).train()
    model.set_loss("sampled_ce", neg_samples=5)
    batch = _a_batch(model, toy_split)
    torch.manual_seed(11)
    got = model.loss(batch)
    torch.manual_seed(11)
    table = model.item_table()
    want = next_item_loss(model.forward(batch["seqs"]), batch["targets"], table, "sampled_ce", 5)
    assert torch.equal(got, want)
