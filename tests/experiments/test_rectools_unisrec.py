"""experiments/peers/rectools_unisrec.py: the id / order plumbing between semcollab and RecTools (pure numpy and
torch, always run) and one real RecTools UniSRec epoch on the toy split (skipped where rectools is not importable:
it lives in its own venv, experiments/peers/install_rectools.sh)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from semcollab.config import EvalConfig
from tests.script_loader import REPO, load_script

RECTOOLS_SMALL = {"n_factors": 16, "projection_hidden": 8, "session_max_len": 12, "batch_size": 8}  # toy widths
PATH = Path(__file__).resolve().parents[2] / "experiments" / "peers" / "rectools_unisrec.py"


@pytest.fixture(scope="module")
def peer():
    return load_script(str(PATH.relative_to(REPO)))


def test_train_interactions_keep_each_sequence_order(peer):
    seqs = [np.array([5, 3, 9]), np.zeros(0, dtype=np.int64), np.array([2, 2, 7, 1])]
    users, items, stamps = peer.train_interactions(seqs)
    assert users.tolist() == [0, 0, 0, 2, 2, 2, 2]
    order = np.lexsort((stamps, users))  # what a stable (user, timestamp) sort gives back
    assert items[order].tolist() == [5, 3, 9, 2, 2, 7, 1]
    assert stamps.tolist() == [0, 1, 2, 0, 1, 2, 3]


def test_alignment_puts_each_items_vector_at_its_internal_id(peer):
    rng = np.random.default_rng(0)
    n_items = 9
    vectors = rng.normal(size=(n_items + 1, 4)).astype(np.float32)
    vectors[0] = 0
    unique = np.array([2, 3, 5, 8, 9])  # sorted external ids RecTools saw in training (item 1, 4, 6, 7 never)
    aligned = peer.align_to_rectools(vectors, unique)
    assert aligned.shape == (6, 4) and not aligned[0].any()
    lookup = peer.internal_lookup(unique, n_items)
    assert lookup[[0, 1, 4, 6, 7]].tolist() == [0, 0, 0, 0, 0]
    for ext in unique:  # the same vector whichever way it is reached
        np.testing.assert_array_equal(aligned[lookup[ext]], vectors[ext])
    # and scores come back to the same columns: internal score j lands on external item unique[j - 1]
    internal = torch.arange(6, dtype=torch.float32).unsqueeze(0) * 10
    back = peer.scores_to_semcollab(internal, torch.from_numpy(unique), n_items)
    assert back.shape == (1, n_items + 1)
    assert back[0, unique].tolist() == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert torch.isinf(back[0, [0, 1, 4, 6, 7]]).all()


def test_left_pad_matches_the_training_window(peer):
    seqs = torch.tensor([[0, 4, 5], [1, 2, 3]])
    assert peer.left_pad(seqs, 5).tolist() == [[0, 0, 0, 4, 5], [0, 0, 1, 2, 3]]
    assert peer.left_pad(seqs, 2).tolist() == [[4, 5], [2, 3]]


def test_alignment_agrees_with_rectools(peer):
    pytest.importorskip("rectools")
    from rectools.fast_transformers import align_embeddings, build_sequences

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(13, 3)).astype(np.float32)
    seqs = [np.array([4, 7, 12]), np.array([7, 2]), np.array([12, 4, 9, 2])]
    users, items, stamps = peer.train_interactions(seqs)
    x, y, unique, _ = build_sequences(*(torch.from_numpy(a) for a in (users, items, stamps)), max_len=5)
    ours = peer.align_to_rectools(vectors, unique.numpy())
    theirs = align_embeddings(torch.from_numpy(vectors), unique, len(unique)).numpy()
    np.testing.assert_array_equal(ours, theirs)
    lookup = peer.internal_lookup(unique.numpy(), 12)
    # RecTools' training inputs are our sequences in its internal ids, in our order
    assert x[2, -3:].tolist() == lookup[[12, 4, 9]].tolist() and y[2, -3:].tolist() == lookup[[4, 9, 2]].tolist()


def _toy_inputs(split, seed: int, defaults: dict, **overrides):
    """Random item vectors (row 0 = padding = zeros) and RecTools' ``defaults`` at toy widths, plus ``overrides``."""
    vectors = np.random.default_rng(seed).normal(size=(split.n_items + 1, 16)).astype(np.float32)
    vectors[0] = 0
    return vectors, {**defaults, **RECTOOLS_SMALL, **overrides}


def test_one_epoch_on_the_toy_split_gives_finite_metrics(peer, toy_split):
    pytest.importorskip("rectools")
    pytest.importorskip("pytorch_lightning")
    vectors, params = _toy_inputs(toy_split, 0, peer.RECTOOLS_DEFAULTS, epochs=1)
    result = peer.run(toy_split, vectors, params, seed=0, eval_cfg=EvalConfig(ks=[10]), log=lambda s: None)
    test = result["test"]
    assert test["n_users"] == toy_split.n_users
    for part in ("overall", "tail", "short_users"):
        for key in ("ndcg@10", "hr@10"):
            assert math.isfinite(test[part][key]) and 0 <= test[part][key] <= 1
    assert result["fit"]["epochs_run"] == 1 and len(result["fit"]["epoch_seconds"]) == 1
    assert result["versions"]["rectools"] == "0.19.0"
    # the ranker masks nothing itself and returns a full row per user
    ranker = peer.UniSRecRanker(peer.fit_unisrec(toy_split, vectors, params, 0, log=lambda s: None)[0],
                                toy_split.n_items).eval()
    scores = ranker.score(torch.tensor([0, 1]), torch.tensor([[0, 3, 4], [1, 2, 3]]))
    assert scores.shape == (2, toy_split.n_items + 1) and torch.isinf(scores[:, 0]).all()
    assert torch.isfinite(scores[:, 1:]).sum() == 2 * result["fit"]["items_in_training"]


def test_validation_pick_restores_the_best_epoch_and_stops_on_patience(peer, toy_split):
    pytest.importorskip("rectools")
    pytest.importorskip("pytorch_lightning")
    # a high rate: on the toy split validation peaks early, then falls
    vectors, params = _toy_inputs(toy_split, 1, peer.RECTOOLS_DEFAULTS, epochs=8, lr=3e-2)
    result = peer.run(toy_split, vectors, params, seed=0, eval_cfg=EvalConfig(ks=[10]), log=lambda s: None,
                      valid_every=1, patience=2)
    fit = result["fit"]
    curve = dict(fit["valid_curve"])
    assert list(curve) == list(range(1, fit["epochs_run"] + 1))  # every epoch
    best = max(curve.values())
    assert fit["best_epoch"] == min(e for e, v in curve.items() if v == best)  # the first best
    # the model evaluated at the end is the best epoch's, restored, not the last epoch's
    assert result["valid"]["overall"]["ndcg@10"] == pytest.approx(curve[fit["best_epoch"]], abs=1e-6)
    later = [e for e in curve if e > fit["best_epoch"]]
    assert fit["stopped_by"] == ("patience" if fit["epochs_run"] < 8 else "epochs")
    # stopped as soon as 2 evaluations passed without a new best (or at the epoch cap)
    assert len(later) <= 2 and (fit["stopped_by"] == "epochs" or len(later) == 2)
    assert fit["select"] == {"every": 1, "patience": 2, "metric": "ndcg@10", "max_minutes": None}


def test_validation_pick_stops_at_the_time_cap(peer, toy_split):
    pytest.importorskip("rectools")
    pytest.importorskip("pytorch_lightning")
    # a slow rate: no patience stop within the cap
    vectors, params = _toy_inputs(toy_split, 1, peer.RECTOOLS_DEFAULTS, epochs=50, lr=1e-5)
    result = peer.run(toy_split, vectors, params, seed=0, eval_cfg=EvalConfig(ks=[10]), log=lambda s: None,
                      valid_every=1, patience=50, max_minutes=1e-6)
    assert result["fit"]["epochs_run"] == 1 and result["fit"]["stopped_by"] == "time"
