"""/v1/explain on a tiny SAERec run: the served items and intents are `semcollab recommend --explain`'s."""

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from semcollab.serve import create_app  # noqa: E402

from .conftest import write_serve_data  # noqa: E402


@pytest.fixture(scope="module")
def saerec_run(serve_env, tiny_bert):
    from semcollab.tasks.ranking import run_ranking

    data = write_serve_data(serve_env / "toy-sae")
    res = run_ranking("saerec", "atomic:toy", overrides=[
        f"data.path={data}", "train.epochs=1", "train.progress=false", f"output_dir={serve_env / 'sae-runs'}",
        f"model_params.encoder={tiny_bert}", "model_params.sae.steps=30", "model_params.sae.expansion=2",
        "model_params.sae.k=3", "model_params.hidden=16", "model_params.layers=1"], log=None)
    return res.run_dir


def test_explain_matches_recommend_explain(saerec_run):
    from semcollab.methods.saerec.explain import explain_recommendations
    from semcollab.tasks.ranking import load_ranking_run

    _, model, split = load_ranking_run(saerec_run)
    with TestClient(create_app([str(saerec_run)])) as c:
        info = c.get("/v1/models").json()["models"][0]
        assert info["model"] == "saerec" and info["explain"] is True and info["factored"] is True
        for user in ("2", "11"):
            want = explain_recommendations(model, split, user, 4)["recommendations"]
            r = c.post("/v1/explain", json={"user_id": user, "k": 4})
            assert r.status_code == 200, r.text
            got = r.json()["items"]
            assert [g["id"] for g in got] == [w["item"] for w in want]
            for g, w in zip(got, want):
                assert g["score"] == pytest.approx(w["score"], rel=1e-5, abs=1e-5)
                assert g["gate"] == pytest.approx(w["gate"], abs=1e-6)
                assert [(i["latent"], i["label"]) for i in g["intents"]] == [(i["latent"], i["label"])
                                                                             for i in w["intents"]]
            plain = c.post("/v1/recommend", json={"user_id": user, "k": 4}).json()["items"]
            assert [p["id"] for p in plain] == [g["id"] for g in got]
        # a new user's history is explained too; similar-items can use the run's text (semantic) side or IDs
        r = c.post("/v1/explain", json={"history": ["Movie 1", "Movie 2"], "k": 2, "n_intents": 1})
        assert r.status_code == 200 and all(len(i["intents"]) <= 1 for i in r.json()["items"])
        r = c.post("/v1/similar-items", json={"item_id": "5", "k": 3, "embedding": "id"})
        assert r.status_code == 200 and r.json()["embedding"] == "id"
