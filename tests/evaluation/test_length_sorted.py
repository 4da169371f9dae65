"""Length-sorted evaluation: padding-invariant models are scored in chunks ordered by history length, and
the per-user results must come back in the evaluation set's order (breakdowns included)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from semcollab.config import DataConfig, EvalConfig
from semcollab.data import load_split
from semcollab.data.dataset import EvalSet
from semcollab.evaluation.ranking import evaluate_ranking, pad_left
from semcollab.models import build_model

from ..tolerance import assert_close_rounding, transformer_reductions
from .test_metrics import Fixed


class SortedFixed(Fixed):
    padding_invariant = True


def test_sorted_chunks_give_the_same_per_user_results_in_the_original_order():
    rng = np.random.default_rng(0)
    n_users, n_items = 9, 12
    scores = rng.normal(size=(n_users, n_items + 1))
    # lengths deliberately out of order, so sorting moves users across chunks of 2
    lens = [5, 1, 3, 7, 2, 6, 1, 4, 3]
    hists = [rng.choice(np.arange(1, n_items + 1), size=n, replace=False) for n in lens]
    targets = [np.array([rng.choice(np.setdiff1d(np.arange(1, n_items + 1), h))]) for h in hists]
    ev = EvalSet(np.arange(n_users), hists, targets)
    pop = np.r_[0, rng.integers(1, 20, size=n_items)]
    cfg = EvalConfig(ks=[1, 3, 5], chunk_size=2, long_user_min=4)
    plain = evaluate_ranking(Fixed(scores), ev, n_items, pop, cfg)
    ordered = evaluate_ranking(SortedFixed(scores), ev, n_items, pop, cfg)
    assert ordered == plain
    assert 0 < plain["overall"]["hr@3"] < 1  # the users differ, so a wrong reordering would show


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "gru4rec"])
def test_declared_padding_invariant_models_score_the_same_however_padded(tmp_path, name):
    from tests.conftest import write_atomic

    d = write_atomic(tmp_path / "small", n_users=20, n_items=30, per_user=8)
    split = load_split(DataConfig(name="atomic:toy", path=str(d), cache=False))
    torch.manual_seed(0)
    model = build_model(name, {"hidden": 8, "layers": 2, "max_len": 10}, split).eval()
    assert model.padding_invariant
    hists = [np.array([3, 4]), np.array([5, 6, 7, 8, 9])]
    with torch.no_grad():
        cut = model.score(torch.tensor([1, 2]), pad_left(hists, 10))  # cut to the longest: width 5
        full = model.score(torch.tensor([1, 2]), torch.cat([torch.zeros(2, 5, dtype=torch.long), pad_left(hists, 10)], 1))
    # width 5 vs 10 runs other kernel shapes: a transformer's rounding (tests/tolerance.py; heads 2, FFN 4 x hidden,
    # then the product with the item table); the GRU's recurrences are about as deep
    blocks = SimpleNamespace(hidden_size=8, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2)
    assert_close_rounding(cut, full, transformer_reductions(blocks, 10, pooled=False, head=True), name)


def test_gru4rec_state_equals_a_step_by_step_run_over_the_history_alone(tmp_path):
    """The packed GRU's last state is the plain GRU run over the unpadded history (no padding steps)."""
    from tests.conftest import write_atomic

    d = write_atomic(tmp_path / "small", n_users=20, n_items=30, per_user=8)
    split = load_split(DataConfig(name="atomic:toy", path=str(d), cache=False))
    torch.manual_seed(0)
    model = build_model("gru4rec", {"hidden": 8, "layers": 2, "max_len": 10}, split).eval()
    hists = [np.array([3, 4]), np.array([5, 6, 7, 8, 9])]
    with torch.no_grad():
        got = model.forward(pad_left(hists, 10))
        for b, h in enumerate(hists):
            alone, _ = model.gru(model.item_emb(torch.as_tensor(h))[None])
            # packed vs plain GRU: per step and layer the gates sum input and recurrent products (2 x hidden),
            # the state carries the rounding of earlier steps; then the projection (hidden)
            want = model.proj(alone[0])
            assert_close_rounding(got[b, -len(h):], want, [2 * 8] * 2 * len(h) + [8], f"history {b}")
