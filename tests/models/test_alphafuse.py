"""AlphaFuse (issue 33 peer): ID embeddings in the null space of the language embeddings, on a SASRec encoder."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import semcollab
from semcollab.config import ConfigError, DataConfig, EvalConfig, TrainConfig
from semcollab.data import load_split
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.models import build_model
from semcollab.train.trainer import fit
from tests.tolerance import rounding_tol

SEQS = torch.tensor([[0, 0, 1, 2], [5, 6, 7, 8]])


def ring_table(path: Path, n_items: int, d: int = 24, seed: int = 0) -> Path:
    """Item text vectors on a noisy ring in ``d`` dimensions: item i's vector is close to item i+1's (the toy
    data's users walk the items in order), so the text says something true about the next item."""
    rng = np.random.default_rng(seed)
    angle = 2 * np.pi * np.arange(1, n_items + 1) / n_items
    table = np.zeros((n_items + 1, d), dtype=np.float32)
    table[1:] = np.stack([np.cos(angle), np.sin(angle)], 1) @ rng.normal(size=(2, d)) + 0.3 * rng.normal(
        size=(n_items, d))
    np.save(path, table)
    return path


def small(table, **kw) -> dict:
    return {"item_table": str(table), "hidden": 16, "null_dim": 6, "max_len": 10, **kw}


def train_ndcg(model, split, epochs: int, lr: float = 0.01, seed: int = 0) -> tuple[float, float]:
    """(test NDCG@10 before, after ``epochs`` epochs of the shared trainer)."""
    ev = EvalConfig(ks=[10])

    def ndcg():
        model.eval()
        return evaluate_ranking(model, split.eval_set("test"), split.n_items, split.item_popularity(), ev,
                                breakdowns=False)["overall"]["ndcg@10"]

    before = ndcg()
    fit(model, split, TrainConfig(epochs=epochs, lr=lr, batch_size=16, progress=False, eval_every=epochs,
                                  seed=seed), ev, log=None)
    return before, ndcg()


def learns_on_ml100k(model: str, params: dict, ml100k_dir, monkeypatch, epochs: int) -> None:
    """A real slice: ML-100K with MiniLM title vectors (the user's embedding cache), ``epochs`` epochs: NDCG@10 at
    least doubles (skipped where MiniLM cannot be loaded)."""
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(Path.home() / ".cache" / "semcollab"))
    split = load_split(DataConfig(name="ml-100k", path=str(ml100k_dir), cache=False))
    torch.manual_seed(0)
    try:
        m = build_model(model, {"template": "{title} ({year}). Genres: {genres}", "max_len": 50, **params}, split)
    except (FileNotFoundError, ImportError) as exc:
        pytest.skip(f"MiniLM unavailable: {exc}")
    before, after = train_ndcg(m, split, epochs=epochs, lr=0.001)
    assert after > 2 * before, (before, after)


def round_trips(model: str, cls_name: str, params: dict, toy_dir, tmp_path) -> None:
    """``semcollab.run`` then ``load_run``: the same class, the same scores, recommendations."""
    res = semcollab.run(model=model, dataset="atomic:toy", log=None, overrides=[
        f"data.path={toy_dir}", f"output_dir={tmp_path / 'runs'}", "train.epochs=2", "train.progress=false",
        *[f"model_params.{k}={v}" for k, v in params.items()]])
    run = semcollab.load_run(res.run_dir)
    assert type(run.model).__name__ == cls_name
    torch.testing.assert_close(run.model.eval().score(None, SEQS), res.model.eval().score(None, SEQS))
    assert len(run.recommend("3", 3)) == 3


@pytest.fixture
def table(toy_split, tmp_path):
    return ring_table(tmp_path / "text.npy", toy_split.n_items)


def test_score_contract_and_padding(toy_split, table):
    m = build_model("alphafuse", small(table, id_init="normal"), toy_split).eval()
    out = m.score(torch.tensor([0, 1]), SEQS)
    assert out.shape == (2, toy_split.n_items + 1) and torch.isfinite(out).all()
    assert m.item_table().shape == (toy_split.n_items + 1, 16) and not m.item_table()[0].any()
    # right-aligned positions, padding keys masked: more left padding changes nothing
    padded = torch.cat([torch.zeros(2, 6, dtype=torch.long), SEQS], 1)
    torch.testing.assert_close(m.score(None, padded), out)


def test_id_part_lives_in_the_null_space_orthogonal_to_the_semantic_subspace(toy_split, table):
    torch.manual_seed(0)
    m = build_model("alphafuse", small(table, id_init="normal"), toy_split)
    d_sem = 16 - 6
    ids = m.id_part()
    assert not ids[:, :d_sem].any() and ids[1:, d_sem:].abs().sum() > 0  # coordinates: exactly zero there
    basis = m.language_basis  # (d, hidden) orthonormal columns: the kept language directions
    gram = basis.T @ basis
    assert (gram - torch.eye(16)).abs().max() <= rounding_tol(gram, basis.shape[0], torch.float32)
    # the ID part mapped back into the language space is orthogonal to the semantic-rich directions
    in_language = ids[:, d_sem:] @ basis[:, d_sem:].T
    overlap = in_language @ basis[:, :d_sem]
    assert overlap.abs().max() <= rounding_tol(in_language, [basis.shape[0], 6], torch.float32)
    # whitened: every kept semantic coordinate has unit variance over the items
    torch.testing.assert_close(m.semantic[1:].var(0), torch.ones(16), atol=1e-4, rtol=1e-4)


def test_semantic_part_stays_frozen_and_the_id_part_trains(toy_split, table):
    torch.manual_seed(0)
    m = build_model("alphafuse", small(table), toy_split)
    sem = m.semantic.clone()
    assert "semantic" not in dict(m.named_parameters()) and not m.item_emb.weight.any()  # zeros init (authors)
    fit(m, toy_split, TrainConfig(epochs=2, lr=0.01, batch_size=16, progress=False), EvalConfig(ks=[10]), log=None)
    assert torch.equal(m.semantic, sem)
    assert m.item_emb.weight[1:].abs().sum() > 0 and not m.item_emb.weight[0].any()
    assert not m.id_part()[:, :10].any()


def test_cover_replaces_the_null_space_coordinates(toy_split, table):
    m = build_model("alphafuse", small(table, cover=True, id_init="normal"), toy_split)
    t = m.item_table()
    torch.testing.assert_close(t[:, :10], m.semantic[:, :10], rtol=0, atol=0)
    torch.testing.assert_close(t[:, 10:], m.item_emb.weight, rtol=0, atol=0)


def test_seeded_runs_are_identical(toy_split, table):
    def one():
        torch.manual_seed(3)
        m = build_model("alphafuse", small(table, id_init="normal"), toy_split)
        fit(m, toy_split, TrainConfig(epochs=2, lr=0.01, batch_size=16, progress=False, seed=3),
            EvalConfig(ks=[10]), log=None)
        return m.eval().score(None, SEQS)

    assert torch.equal(one(), one())


def test_config_errors_name_the_key(toy_split, table):
    with pytest.raises(ConfigError, match="model_params.null_dim"):
        build_model("alphafuse", small(table, null_dim=16), toy_split)
    with pytest.raises(ConfigError, match="model_params.hidden=32 exceeds the text vectors' width 24"):
        build_model("alphafuse", small(table, hidden=32), toy_split)
    with pytest.raises(ConfigError, match="model_params.item_table"):
        build_model("alphafuse", small(table.with_name("missing.npy")), toy_split)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_learns_on_the_toy_walk(toy_split, table, similarity):
    torch.manual_seed(0)
    m = build_model("alphafuse", small(table, similarity=similarity), toy_split)
    before, after = train_ndcg(m, toy_split, epochs=15)
    assert after > before + 0.2 and after > 2 * before, (before, after)


def test_run_folder_round_trip(toy_dir, toy_split, tmp_path):
    table = ring_table(tmp_path / "text.npy", toy_split.n_items)
    round_trips("alphafuse", "AlphaFuse", small(table, id_init="normal"), toy_dir, tmp_path)


@pytest.mark.slow
def test_learns_on_ml100k_with_minilm(ml100k_dir, monkeypatch):
    learns_on_ml100k("alphafuse", {}, ml100k_dir, monkeypatch, epochs=3)


@pytest.mark.parametrize("model", ["alphafuse", "hybrid"])
def test_text_spanning_fewer_directions_than_the_semantic_part_warns(toy_split, tmp_path, model):
    rng = np.random.default_rng(0)
    low = np.zeros((toy_split.n_items + 1, 24), dtype=np.float32)
    low[1:] = rng.normal(size=(toy_split.n_items, 3)) @ rng.normal(size=(3, 24))  # rank 3
    np.save(tmp_path / "low.npy", low)
    params = small(tmp_path / "low.npy") | ({"item_view": "null_space"} if model == "hybrid" else {})
    with pytest.warns(UserWarning, match=r"span 3 directions, fewer than the 10 frozen semantic dimensions"):
        build_model(model, params, toy_split)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a full-rank text table: no warning
        build_model(model, small(ring_table(tmp_path / "ring.npy", toy_split.n_items)) |
                    ({"item_view": "null_space"} if model == "hybrid" else {}), toy_split)
