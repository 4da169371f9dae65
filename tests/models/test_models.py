import numpy as np
import pytest
import torch

from semcollab.data.batches import BatchBuilder, sequence_windows
from semcollab.models import REGISTRY, build_model
from semcollab.models.layers import attention_mask


def test_windows_cover_every_transition():
    seq = np.arange(1, 12)  # 11 items -> 10 transitions
    w = sequence_windows([seq], max_len=4)
    assert w.shape[1] == 5
    batch = next(BatchBuilder("next_item", [seq], 11, 4).epoch(100, np.random.default_rng(0), "cpu"))
    pairs = [(int(a), int(b)) for row_in, row_t in zip(batch["seqs"], batch["targets"])
             for a, b in zip(row_in, row_t) if b]
    assert sorted(b for _, b in pairs) == list(range(2, 12))  # each transition is a target exactly once
    assert all(b == a + 1 for a, b in pairs)  # and is predicted from the item just before it


def test_attention_mask_causal_and_padding():
    seqs = torch.tensor([[0, 0, 3, 4]])
    m = attention_mask(seqs, causal=True)[0, 0]
    assert m[3].tolist() == [False, False, True, True]
    assert m[2].tolist() == [False, False, True, False]
    assert m.any(-1).all()  # padding rows attend to themselves, no NaN


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec", "mf-bpr", "pop"])
def test_score_contract(name, toy_split):
    model = build_model(name, {}, toy_split)
    seqs = torch.tensor([[0, 0, 1, 2], [5, 6, 7, 8]])
    out = model.score(torch.tensor([0, 1]), seqs)
    assert out.shape == (2, toy_split.n_items + 1)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec", "mf-bpr"])
def test_loss_falls(name, toy_split):
    torch.manual_seed(0)
    params = {"mf-bpr": {"hidden": 16}, "bert4rec": {"hidden": 32, "mask_prob": 0.5}}.get(name, {"hidden": 32})
    model = build_model(name, params, toy_split)
    model.set_loss("auto")
    b = BatchBuilder(model.batch_kind, toy_split.train_sequences(), toy_split.n_items, model.max_len,
                     params.get("mask_prob", 0.2), getattr(model, "mask_token", None))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(40):
        tot = 0.0
        for batch in b.epoch(16, rng, "cpu"):
            loss = model.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item()
        losses.append(tot)
    assert losses[-1] < 0.7 * losses[0]


def test_bce_loss_option_and_unsupported(toy_split):
    m = build_model("sasrec", {}, toy_split)
    m.set_loss("bce", 2)
    batch = {"seqs": torch.tensor([[0, 1, 2]]), "targets": torch.tensor([[0, 2, 3]])}
    assert m.loss(batch).item() > 0
    with pytest.raises(ValueError, match="supports loss"):
        build_model("bert4rec", {}, toy_split).set_loss("bce")


def test_unknown_model_and_param(toy_split):
    from semcollab.config import ConfigError

    with pytest.raises(KeyError, match="unknown model"):
        build_model("nope", {}, toy_split)
    with pytest.raises(ConfigError, match="model_params.hiden"):
        build_model("sasrec", {"hiden": 3}, toy_split)
    assert {"pop", "mf-bpr", "sasrec", "gru4rec", "bert4rec"} <= set(REGISTRY)


def test_default_loss_is_each_models_own(toy_split):
    from semcollab.config import TrainConfig

    mf = build_model("mf-bpr", {}, toy_split)
    mf.set_loss(TrainConfig().loss)
    assert mf.loss_type == "bpr"
    sas = build_model("sasrec", {}, toy_split)
    sas.set_loss(TrainConfig().loss)
    assert sas.loss_type == "ce"
