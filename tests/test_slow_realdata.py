"""Real-data checks that take minutes: run with `python -m pytest -m slow`."""

import numpy as np
import pytest

from semcollab.config import DataConfig, EvalConfig, TrainConfig
from semcollab.data import load_split
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.models import build_model
from semcollab.train.trainer import fit

pytestmark = pytest.mark.slow


def test_sasrec_beats_popularity_on_beauty(shared_dir):
    split = load_split(DataConfig(name="s3rec:Beauty", path=str(shared_dir / "data/s3rec/Beauty.txt"), cache=False))
    ev = EvalConfig(ks=[10])
    pop = evaluate_ranking(build_model("pop", {}, split), split.eval_set("test"), split.n_items,
                           split.item_popularity(), ev, breakdowns=False)
    sas = build_model("sasrec", {"dropout": 0.5, "attn_dropout": 0.5}, split)
    fit(sas, split, TrainConfig(epochs=3, progress=False), ev, log=None)
    res = evaluate_ranking(sas, split.eval_set("test"), split.n_items, split.item_popularity(), ev, breakdowns=False)
    assert res["overall"]["ndcg@10"] > 2 * pop["overall"]["ndcg@10"]


def test_smollm2_real_weights_encode_titles():
    from semcollab.text import resolve_encoder
    from semcollab.text.encoders import TextEncoder

    try:
        spec = resolve_encoder("smollm2-135m")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    enc = TextEncoder(spec, device="cpu", batch_size=4)
    v = enc.encode(["Star Wars (1977). Genres: Action Sci-Fi", "Return of the Jedi (1983). Genres: Action Sci-Fi",
                    "Sleepless in Seattle (1993). Genres: Comedy Romance"])
    assert v.shape == (3, 576) and np.isfinite(v).all()
    assert v[0] @ v[1] > v[0] @ v[2]


def test_semantic_only_beats_random_on_ml100k(ml100k_dir):
    split = load_split(DataConfig(name="ml-100k", path=str(ml100k_dir), cache=False))
    sem = build_model("semantic", {"template": "{title} ({year}). Genres: {genres}", "recency_decay": 0.9}, split)
    res = evaluate_ranking(sem, split.eval_set("test"), split.n_items, split.item_popularity(), EvalConfig(ks=[10]),
                           breakdowns=False)
    assert res["overall"]["hr@10"] > 3 * 10 / split.n_items  # random ranking gets ~10/n_items


def test_saerec_intents_stay_in_use_on_ml100k(ml100k_dir, tmp_path):
    """Regression: a softmax gate once collapsed onto the sequence branch, leaving intents unused."""
    import torch

    from semcollab.methods.saerec.explain import explain_recommendations

    split = load_split(DataConfig(name="ml-100k", path=str(ml100k_dir), cache=False))
    m = build_model("saerec", {"template": "{title} ({year}). Genres: {genres}", "sae": {"steps": 300}}, split)
    r = fit(m, split, TrainConfig(epochs=5, progress=False, eval_every=5), EvalConfig(ks=[10]), log=None)
    assert r.history[-1]["loss"] < r.history[0]["loss"]
    with torch.no_grad():
        res = explain_recommendations(m, split, split.user_vocab.decode(1), k=3, stage="test")
    for rec in res["recommendations"]:
        assert rec["gate"]["personal"] > 0.05 and rec["gate"]["public"] > 0.05
        assert any(abs(i["contribution"]) > 1e-3 for i in rec["intents"])


def test_quickstart_under_90_seconds_and_sasrec_clearly_beats_popularity(ml100k_dir, tmp_path, monkeypatch):
    """The first-run experience: the whole quickstart (data, popularity, SASRec, table) on 2 cores."""
    import re
    import time

    from typer.testing import CliRunner

    from semcollab.cli import app

    monkeypatch.setenv("SEMCOLLAB_ML100K", str(ml100k_dir))
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, ["quickstart"])
    seconds = time.perf_counter() - t0
    assert r.exit_code == 0, r.output
    rows = {m: float(re.search(rf"│ {m}\s+│ ([0-9.]+)", r.output).group(1)) for m in ("pop", "sasrec")}
    assert rows["sasrec"] > 1.5 * rows["pop"], rows  # HR@10
    assert seconds < 90, seconds
