import pytest

from semcollab.config import DataConfig, EvalConfig, TrainConfig
from semcollab.data import load_split
from semcollab.evaluate.evaluator import evaluate_ranking
from semcollab.models import build_model
from semcollab.train.trainer import fit


def test_early_stopping_restores_best(toy_split):
    m = build_model("sasrec", {"hidden": 16, "layers": 1}, toy_split)
    r = fit(m, toy_split, TrainConfig(epochs=30, patience=2, progress=False, lr=0.02), EvalConfig(ks=[10]), log=None)
    assert r.best_epoch >= 1 and r.epochs_run <= 30
    res = evaluate_ranking(m, toy_split.eval_set("valid"), toy_split.n_items, toy_split.item_popularity(),
                           EvalConfig(ks=[10]), breakdowns=False)
    assert res["overall"]["ndcg@10"] == pytest.approx(r.best_valid)


def test_sasrec_beats_popularity_on_real_ml100k(ml100k_dir):
    """A small real slice: ML-100K, a few epochs. SASRec must beat popularity on validation."""
    split = load_split(DataConfig(name="ml-100k", path=str(ml100k_dir), cache=False))
    ev = EvalConfig(ks=[10])
    pop = build_model("pop", {}, split)
    pop_res = evaluate_ranking(pop, split.eval_set("valid"), split.n_items, split.item_popularity(), ev, breakdowns=False)
    sas = build_model("sasrec", {"hidden": 32, "layers": 1, "max_len": 30}, split)
    r = fit(sas, split, TrainConfig(epochs=6, progress=False, patience=6, lr=3e-3), ev, log=None)
    assert r.history[-1]["loss"] < r.history[0]["loss"]
    assert r.best_valid > 1.1 * pop_res["overall"]["ndcg@10"]
