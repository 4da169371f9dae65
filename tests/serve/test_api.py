"""The serving API in-process (FastAPI TestClient): every endpoint, its ground truth, bad input, key, metrics."""

import json

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from semcollab.serve import create_app  # noqa: E402

from .conftest import HOSTILE  # noqa: E402


@pytest.fixture(scope="module")
def client(sasrec_run, ctr_run):
    app = create_app([str(sasrec_run), str(ctr_run)], max_batch=8, max_body_bytes=4096, allow_pickle=True)
    with TestClient(app) as c:
        yield c


def rank_name(client):
    return next(m["name"] for m in client.get("/v1/models").json()["models"] if m["task"] == "rank")


def ctr_name(client):
    return next(m["name"] for m in client.get("/v1/models").json()["models"] if m["task"] == "ctr")


def field_of(r) -> str:
    return ".".join(map(str, r.json()["detail"][0]["loc"]))


def test_healthz_and_models(client, sasrec_run):
    assert client.get("/healthz").json() == {"status": "ok", "models": 2}
    models = {m["task"]: m for m in client.get("/v1/models").json()["models"]}
    rank = models["rank"]
    run_json = json.loads((sasrec_run / "run.json").read_text())
    assert rank["name"] == sasrec_run.name and rank["model"] == "sasrec" and rank["dataset"] == "atomic:toy"
    assert rank["n_items"] == 34 and rank["data_fingerprint"] == run_json["data_fingerprint"]
    assert rank["factored"] is True  # served by one matmul against the precomputed item matrix
    assert rank["test_metrics"] == json.loads((sasrec_run / "metrics.json").read_text())["test"]
    assert rank["version"] == f"{sasrec_run.name}@{run_json['data_fingerprint'][:12]}"
    assert models["ctr"]["model"] == "mf"


def test_recommend_equals_the_models_own_ranking(client, sasrec_run):
    """The served top-k is `semcollab recommend`'s (explain_recommendations over model.score), for several users."""
    from semcollab.methods.saerec.explain import explain_recommendations
    from semcollab.tasks.ranking import load_ranking_run

    _, model, split = load_ranking_run(sasrec_run)
    name = rank_name(client)
    for user in ("1", "7", "30"):
        want = explain_recommendations(model, split, user, 10)["recommendations"]
        got = client.post("/v1/recommend", json={"model": name, "user_id": user, "k": 10})
        assert got.status_code == 200, got.text
        body = got.json()
        assert [i["id"] for i in body["items"]] == [w["item"] for w in want]
        for g, w in zip(body["items"], want):
            assert g["score"] == pytest.approx(w["score"], rel=1e-5, abs=1e-5)  # float32 scores
        assert body["version"].startswith(sasrec_run.name + "@")
        seen = {i["id"] for i in body["history"]}
        assert not seen & {i["id"] for i in body["items"]}  # exclude_seen by default


def test_recommend_history_titles_allow_deny(client):
    name = rank_name(client)
    # an ad-hoc history of a new user, by ids and by (case-insensitive) titles, ranks as the same items would
    by_id = client.post("/v1/recommend", json={"model": name, "history": ["5", "6", "7"], "k": 5}).json()
    by_title = client.post("/v1/recommend", json={"model": name, "history": ["movie 5", "Movie 6", "7"], "k": 5}).json()
    assert [i["id"] for i in by_id["items"]] == [i["id"] for i in by_title["items"]]
    assert not {"5", "6", "7"} & {i["id"] for i in by_id["items"]}
    assert [h["title"] for h in by_id["history"]] == ["Movie 5", "Movie 6", "Movie 7"]
    r = client.post("/v1/recommend", json={"history": ["5"], "model": name, "k": 34, "allow": ["1", "2", "5"]}).json()
    assert {i["id"] for i in r["items"]} == {"1", "2"} and "only 2 items" in r["note"]
    r = client.post("/v1/recommend", json={"history": ["5"], "model": name, "k": 34, "deny": ["1"]}).json()
    assert len(r["items"]) == 32 and "1" not in {i["id"] for i in r["items"]}  # 34 items (5-core), less 2
    r = client.post("/v1/recommend", json={"history": ["5"], "model": name, "k": 34, "exclude_seen": False}).json()
    assert len(r["items"]) == 34
    # hostile titles come back as data, unchanged
    assert client.get("/v1/items", params={"model": name, "q": "onerror"}).json()["items"] == [
        {"id": "3", "title": HOSTILE}]


def test_batch_is_the_single_requests(client, monkeypatch):
    """A batch is scored in length-sorted chunks, each padded to its own longest history: same items, same
    scores (to float32 rounding) as one request per user. CHUNK=2 makes several chunks of different widths."""
    name = rank_name(client)
    monkeypatch.setattr(client.app.state.runs[name], "CHUNK", 2)
    users = ["1", "2", "3", "9", "12", "30", "17"]
    # different history lengths in one batch, new users among them (an ad-hoc history of 1 and of 5 items)
    adhoc = client.post("/v1/recommend/batch", json={"model": name, "requests": [
        {"user_id": "4", "k": 3}, {"history": ["1"], "k": 4}, {"history": ["5", "6", "7", "8", "9"]}]}).json()
    for req, res in zip([{"user_id": "4", "k": 3}, {"history": ["1"], "k": 4},
                         {"history": ["5", "6", "7", "8", "9"]}], adhoc["results"]):
        one = client.post("/v1/recommend", json={"model": name, **req}).json()
        assert [i["id"] for i in res["items"]] == [i["id"] for i in one["items"]]
    batch = client.post("/v1/recommend/batch", json={"model": name, "user_ids": users, "k": 5})
    assert batch.status_code == 200, batch.text
    for u, res in zip(users, batch.json()["results"]):
        one = client.post("/v1/recommend", json={"model": name, "user_id": u, "k": 5}).json()
        assert [i["id"] for i in res["items"]] == [i["id"] for i in one["items"]]
        assert [i["score"] for i in res["items"]] == pytest.approx([i["score"] for i in one["items"]], abs=1e-5)
    mixed = client.post("/v1/recommend/batch", json={"model": name, "requests": [
        {"user_id": "4", "k": 3}, {"history": ["Movie 1", "2"], "k": 2}]}).json()["results"]
    assert [len(r["items"]) for r in mixed] == [3, 2]


def test_similar_items(client):
    name = rank_name(client)
    r = client.post("/v1/similar-items", json={"model": name, "item_id": "4", "k": 5}).json()
    assert r["embedding"] == "id" and r["item"]["id"] == "4" and len(r["items"]) == 5
    assert "4" not in {i["id"] for i in r["items"]}
    scores = [i["score"] for i in r["items"]]
    assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)  # cosines
    r = client.post("/v1/similar-items", json={"model": name, "item_id": "4", "embedding": "semantic"})
    assert r.status_code == 422 and field_of(r) == "body.embedding"


def test_ctr_score(client, ctr_run):
    from semcollab.tasks.ctr import load_ctr_run

    name = ctr_name(client)
    r = client.post("/v1/score", json={"model": name, "user_id": "1", "item_ids": ["2", "3"]})
    assert r.status_code == 200, r.text
    probs = [s["probability"] for s in r.json()["scores"]]
    _, net, split = load_ctr_run(ctr_run, allow_pickle=True)
    import torch

    u = split.user_vocab.encode("1")
    want = torch.sigmoid((net.user_emb.weight[u] * net.item_emb.weight[[split.item_vocab.encode(i) for i in "23"]])
                         .sum(-1)).tolist()
    assert probs == pytest.approx(want, abs=1e-6)
    # a ranking endpoint on a CTR run (and the reverse) names the model field
    r = client.post("/v1/recommend", json={"model": name, "user_id": "1"})
    assert r.status_code == 422 and field_of(r) == "body.model" and "/v1/score" in r.json()["detail"][0]["msg"]
    r = client.post("/v1/score", json={"model": rank_name(client), "user_id": "1", "item_ids": ["2"]})
    assert r.status_code == 422 and field_of(r) == "body.model"
    r = client.post("/v1/score", json={"model": name, "user_id": "1", "item_ids": ["2", "nope"]})
    assert r.status_code == 422 and field_of(r) == "body.item_ids" and r.json()["detail"][0]["input"] == ["nope"]


def test_explain_refused_for_a_non_intent_model(client):
    r = client.post("/v1/explain", json={"model": rank_name(client), "user_id": "1"})
    assert r.status_code == 422 and field_of(r) == "body.model" and "saerec" in r.json()["detail"][0]["msg"]


@pytest.mark.parametrize("body, status, field", [
    ({"user_id": "1"}, 422, "body.model"),  # two runs loaded: model is required
    ({"model": "nosuch", "user_id": "1"}, 422, "body.model"),
    ({"model": "RANK", "user_id": "nobody"}, 422, "body.user_id"),
    ({"model": "RANK", "history": ["1", "zzz", "Not A Title"]}, 422, "body.history"),
    ({"model": "RANK"}, 422, "body.user_id"),  # neither user_id nor history
    ({"model": "RANK", "user_id": "1", "history": ["1"]}, 422, "body.user_id"),
    ({"model": "RANK", "user_id": "1", "k": 0}, 422, "body.k"),
    ({"model": "RANK", "user_id": "1", "k": 35}, 422, "body.k"),  # above the catalogue (34 items)
    ({"model": "RANK", "user_id": "1", "k": 5000}, 422, "body.k"),
    ({"model": "RANK", "user_id": "1", "deny": ["x1"]}, 422, "body.deny"),
    ({"model": "RANK", "user_id": "1", "allow": ["x1"]}, 422, "body.allow"),
    ({"model": "RANK", "user_id": 5}, 422, "body.user_id"),
    ({"model": "RANK", "user_id": "1", "surprise": 1}, 422, "body.surprise"),
])
def test_bad_recommend_requests_name_the_field(client, body, status, field):
    body = {k: (rank_name(client) if v == "RANK" else v) for k, v in body.items()}
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == status, r.text
    assert field_of(r) == field, r.text


def test_unknown_ids_are_listed(client):
    r = client.post("/v1/recommend", json={"model": rank_name(client), "history": ["1", "zzz", "Not A Title"]})
    assert r.json()["detail"][0]["input"] == ["zzz", "Not A Title"]


def test_batch_limit_body_limit_and_malformed_json(client):
    name = rank_name(client)
    r = client.post("/v1/recommend/batch", json={"model": name, "user_ids": [str(u) for u in range(1, 10)]})
    assert r.status_code == 413 and field_of(r) == "body.user_ids" and "at most 8" in r.text
    r = client.post("/v1/recommend/batch", json={"model": name, "user_ids": ["1", "nobody"]})
    assert r.status_code == 422 and field_of(r) == "body.user_ids.1"
    r = client.post("/v1/recommend/batch", json={"model": name, "requests": [{"user_id": "1"}, {"user_id": "2",
                                                                                                 "k": 99}]})
    assert r.status_code == 422 and field_of(r) == "body.requests.1.k"
    big = json.dumps({"model": name, "history": ["1"] * 2000})
    r = client.post("/v1/recommend", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and field_of(r) == "body" and "4096 bytes" in r.text

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(10):
            yield b" " * 1000

    r = client.post("/v1/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.post("/v1/recommend", content=b'{"model": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    # bytes that are not UTF-8 text (schemathesis found these: FastAPI answers a bare 400 without a field)
    r = client.post("/v1/recommend", content=b"\x1c\xffU\r\xfe#", headers={"content-type": "application/json"})
    assert r.status_code == 422 and field_of(r) == "body" and r.json()["detail"][0]["type"] == "json_invalid"
    assert client.get("/v1/nosuch").status_code == 404


def test_query_endpoints(client):
    name = rank_name(client)
    r = client.get("/v1/users", params={"model": name, "q": "1", "limit": 3}).json()
    assert r["users"] == ["1", "10", "11"] and r["total"] == 11
    r = client.get("/v1/items", params={"model": name, "q": "movie 1", "limit": 50}).json()["items"]
    assert {i["id"] for i in r} == {"1", "10", "17", "18", "19"}  # 11-16 fell to the 5-core filter
    r = client.get("/v1/items", params={"model": name, "limit": 0})
    assert r.status_code == 422 and field_of(r) == "query.limit"
    r = client.get("/v1/items", params={"model": "nosuch"})
    assert r.status_code == 422 and field_of(r) == "query.model"


def test_metrics_count_requests_and_latency(client):
    name = rank_name(client)
    before = client.get("/metrics").text
    client.post("/v1/recommend", json={"model": name, "user_id": "1"})
    client.post("/v1/recommend", json={"model": name, "user_id": "nobody"})
    text = client.get("/metrics").text
    assert text.startswith("# HELP semcollab_requests_total")
    assert 'semcollab_requests_total{endpoint="/v1/recommend",method="POST",status="200"}' in text
    assert 'semcollab_requests_total{endpoint="/v1/recommend",method="POST",status="422"}' in text
    assert 'semcollab_request_duration_seconds_bucket{endpoint="/v1/recommend",le="+Inf"}' in text

    def count(t):
        line = [x for x in t.splitlines() if x.startswith('semcollab_request_duration_seconds_count{endpoint="/v1/'
                                                               'recommend"}')]
        return int(line[0].split()[-1]) if line else 0

    assert count(text) == count(before) + 2
    client.get("/no/such/path")
    assert 'endpoint="other"' in client.get("/metrics").text  # unknown paths do not grow the label set


def test_page_is_served_without_external_resources(client):
    r = client.get("/")
    assert r.status_code == 200 and "semcollab serve" in r.text
    assert r.headers["content-security-policy"] == "default-src 'self'"
    js = client.get("/static/app.js").text
    for text in (r.text, js, client.get("/static/style.css").text):
        assert "http://" not in text and "https://" not in text
    assert "innerHTML" not in js and "textContent" in js


def test_api_key(sasrec_run, monkeypatch):
    monkeypatch.setenv("SEMCOLLAB_TEST_KEY", "s3cret")
    with TestClient(create_app([str(sasrec_run)], api_key_env="SEMCOLLAB_TEST_KEY")) as c:
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200
        assert c.get("/openapi.json").status_code == 200
        r = c.post("/v1/recommend", json={"user_id": "1"})
        assert r.status_code == 401 and field_of(r) == "header.X-API-Key"
        assert c.post("/v1/recommend", json={"user_id": "1"}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/metrics").status_code == 401
        r = c.post("/v1/recommend", json={"user_id": "1", "k": 3}, headers={"X-API-Key": "s3cret"})
        assert r.status_code == 200 and len(r.json()["items"]) == 3  # one run: model may be left out


def test_start_up_errors(sasrec_run, tmp_path):
    from semcollab.config import ConfigError
    from semcollab.errors import RunFileError

    with pytest.raises(ConfigError, match="two runs are named"):
        create_app([str(sasrec_run), str(sasrec_run)])
    with pytest.raises(RunFileError, match="not a folder"):
        create_app([str(tmp_path / "missing")])


def test_a_wrong_factoring_falls_back_to_the_models_own_scoring(sasrec_run, monkeypatch):
    """The start-up self-check compares the factored scores with model.score: a factoring that does not
    reproduce them (here: a stale item matrix) is dropped, and the model's own scoring is served."""
    import torch

    from semcollab.methods.saerec.explain import explain_recommendations
    from semcollab.serve import ranker
    from semcollab.tasks.base import read_run_record
    from semcollab.tasks.ranking import load_ranking_run

    real = ranker._encoder

    def stale(model):
        table, encode, mask = real(model)
        return table + 0.5 * torch.randn_like(table), encode, mask

    monkeypatch.setattr(ranker, "_encoder", stale)
    cfg, model, split = load_ranking_run(sasrec_run)
    run = ranker.RankRun(sasrec_run.name, sasrec_run, cfg, model, split,
                         read_run_record(sasrec_run)["data_fingerprint"], {})
    assert run.factored is False and run.item_matrix is None
    with TestClient(create_app([run])) as c:
        got = c.post("/v1/recommend", json={"user_id": "5", "k": 6}).json()["items"]
        assert c.get("/v1/models").json()["models"][0]["factored"] is False
    want = explain_recommendations(model, split, "5", 6)["recommendations"]
    assert [g["id"] for g in got] == [w["item"] for w in want]


def test_precomputed_user_vectors_serve_what_the_encoder_serves(sasrec_run):
    """Known users are encoded once at start-up; a request by user id reads that row. It must rank exactly as
    encoding the history per request does (the path ad-hoc histories and --no-precompute-users take)."""
    import numpy as np
    import torch

    from semcollab.serve import ranker
    from semcollab.tasks.ranking import load_ranking_run

    cfg, model, split = load_ranking_run(sasrec_run)
    fast = ranker.RankRun(sasrec_run.name, sasrec_run, cfg, model, split, None, {})
    slow = ranker.RankRun(sasrec_run.name, sasrec_run, cfg, model, split, None, {}, precompute_users=False)
    assert fast.user_vectors is not None and fast.user_vectors.shape[0] == split.n_users and slow.user_vectors is None
    queries = [{"user": u, "history": None, "k": 10, "exclude_seen": True, "allow": None, "deny": None}
               for u in range(split.n_users)]
    got, want = fast.recommend(queries), slow.recommend(queries)
    for g, w in zip(got, want):
        gi, gv = zip(*g["items"])
        wi, wv = zip(*w["items"])
        np.testing.assert_allclose(gv, wv, rtol=1e-5, atol=1e-5)  # float32 scores of O(1): rounding only
        assert set(gi) == set(wi) or np.allclose(sorted(gv), sorted(wv), atol=1e-5)  # ties may swap
    # and the precomputed row is the encoder's output for that user's history
    u = int(np.argmax([len(h) for h in fast.histories]))
    with torch.inference_mode():
        enc = fast._encode(torch.tensor([u]), fast._pad([fast.histories[u]]))[0]
    torch.testing.assert_close(fast.user_vectors[u], enc.float(), rtol=1e-5, atol=1e-5)


def test_a_stalled_body_gets_408_not_a_hang():
    """A client that declares a body and stops sending is answered 408 after body_timeout_s (ASGI-level:
    the middleware reads the body before the app)."""
    import asyncio
    import time

    from semcollab.serve.middleware import Metrics, ServeMiddleware

    async def never_called(scope, receive, send):
        raise AssertionError("the app must not see a body that never arrived")

    mw = ServeMiddleware(never_called, Metrics(), {"/v1/recommend"}, 4096, None, set(), body_timeout_s=0.3)
    sent = []

    async def receive():
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/recommend", "headers": [(b"content-length", b"100")]}
    t0 = time.monotonic()
    asyncio.run(asyncio.wait_for(mw(scope, receive, send), 5))
    assert time.monotonic() - t0 < 2
    assert sent[0]["status"] == 408 and b'"body"' in sent[1]["body"]


def test_a_ctr_run_on_unknown_pickles_needs_the_opt_in_given_now(ctr_run):
    """The run folder records data.allow_pickle=true, but a run folder may come from anyone: serving it reads its
    hand-made CoLLM pickles only with allow_pickle given to the server (--allow-pickle)."""
    from semcollab.data import DataError

    with pytest.raises(DataError, match="allow_pickle"):
        create_app([str(ctr_run)])
