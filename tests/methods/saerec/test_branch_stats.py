"""Branch-usage statistics of SAERec: fusion weights, norms, score split, rank effect, entropy, coverage."""

import json
import math

import numpy as np
import pytest
import torch

import semcollab.tasks.ranking_eval as ranking_eval
from semcollab.config import EvalConfig, RunConfig
from semcollab.evaluation.ranking import evaluate_ranking, pad_left
from semcollab.methods.saerec.branch_stats import (
    attention_entropy,
    last_position_terms,
    normalised_entropy,
    saerec_branch_stats,
    score_terms,
)
from semcollab.methods.saerec.intents import latent_idf, low_idf_intents
from semcollab.methods.saerec.model import SAERec, SAERecConfig
from semcollab.models.sasrec import SASRec, SASRecConfig

N_LAT = 24


def make(split, keep=None, **kw):
    """A SAERec over the toy split, built without text or an SAE (3 random latents per item), with weights
    drawn large enough that the intent branches move rankings."""
    rng = np.random.default_rng(0)
    n = split.n_items + 1
    idx = np.stack([rng.choice(N_LAT - 4, 3, replace=False) for _ in range(n)])  # latents 20..23 never fire
    val = rng.uniform(0.2, 2.0, size=idx.shape).astype(np.float32)
    idf = latent_idf(idx[1:], val[1:], N_LAT) + 0.1
    cfg = SAERecConfig(hidden=16, layers=1, heads=2, max_len=8, n_personal=4, n_public=3, recent=4, **kw)
    torch.manual_seed(0)
    m = SAERec(split.n_users, split.n_items, cfg, idx, val, rng.normal(size=(N_LAT, 8)).astype(np.float32), idf,
               low_idf_intents(idf, 3, None if keep is None else np.flatnonzero(keep)), keep)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "ln" not in name.split(".")[-2:][0]:  # leave layer norms at identity
                std = 0.05 if name.startswith(("gate", "fuse")) else 0.5  # fusion weights away from 0 and 1
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return m.eval()


def test_entropy_helper_on_hand_made_cases():
    uniform = torch.full((1, 4), 0.25)
    ent, n = attention_entropy(uniform, torch.ones(1, 4, dtype=torch.bool))
    assert n.item() == 4 and ent.item() == pytest.approx(math.log(4), abs=1e-6)
    assert normalised_entropy(ent, n).item() == pytest.approx(1.0, abs=1e-6)
    # two valid slots of three: (0.5, 0.5, 0) -> log 2, normalised by log 2 (not log 3)
    a = torch.tensor([[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [1.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, False], [True, True, True], [True, False, False]])
    ent, n = attention_entropy(a, valid)
    expected = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert ent.tolist() == pytest.approx([math.log(2), expected, 0.0], abs=1e-6)
    assert n.tolist() == [2, 3, 1]
    ne = normalised_entropy(ent, n)
    assert ne[0].item() == pytest.approx(1.0) and ne[1].item() == pytest.approx(expected / math.log(3))
    assert torch.isnan(ne[2])  # one slot: undefined, left out of means


@pytest.mark.parametrize("kw", [{}, {"fusion": "attention", "retrieval": "cosine"}])
def test_weights_match_explain_and_terms_reproduce_the_score(toy_split, kw):
    m = make(toy_split, **kw)
    ev = toy_split.eval_set("test")
    seqs = pad_left(ev.histories[:5], m.max_len)
    t = last_position_terms(m, seqs)
    w = t["weights"]
    assert ((w >= 0) & (w <= 1)).all() and (w[:, 0] == 1).all()
    if kw.get("fusion") == "attention":
        torch.testing.assert_close(w[:, 1] + w[:, 2], torch.ones(5))
    # one user alone, as explain sees it (its own unpadded history)
    one = torch.as_tensor(ev.histories[2][-m.max_len:].copy())[None]
    ex = m.explain(one, 7)
    assert [ex["gate"]["personal"], ex["gate"]["public"]] == pytest.approx(w[2, 1:].tolist(), abs=1e-5)
    t1 = last_position_terms(m, one)
    s = score_terms(m, t1)
    total = s["sequence"] + s["personal"] + s["public"]
    torch.testing.assert_close(total, m.score(None, one), atol=1e-5, rtol=0)
    torch.testing.assert_close(s["fused"], m.score(None, one), atol=1e-5, rtol=0)
    assert s["sequence"][0, 7].item() == pytest.approx(ex["sequence_term"], abs=1e-5)
    per = sum(d["contribution"] for d in ex["intents"] if d["kind"] == "personal")
    pub = sum(d["contribution"] for d in ex["intents"] if d["kind"] == "public")
    assert s["personal"][0, 7].item() == pytest.approx(per, abs=1e-5)
    assert s["public"][0, 7].item() == pytest.approx(pub, abs=1e-5)
    assert abs(per) > 1e-3 and abs(pub) > 1e-3  # the check is not vacuous
    # per-item form (B, k) agrees with the full form
    items = torch.tensor([[7, 3, 1]])
    torch.testing.assert_close(score_terms(m, t1, items)["personal"], s["personal"][:, [7, 3, 1]])


def test_seq_only_metrics_equal_a_model_with_gates_forced_to_zero(toy_split, monkeypatch):
    m = make(toy_split)
    stats = saerec_branch_stats(m, toy_split, "test", max_users=None, batch_size=7)
    ev, pop = toy_split.eval_set("test"), toy_split.item_popularity()
    cfg = EvalConfig(ks=[10])
    full = evaluate_ranking(m, ev, toy_split.n_items, pop, cfg, breakdowns=False)["overall"]
    assert stats["users"] == len(ev) == stats["users_total"]
    assert stats["hr@10_fused"] == pytest.approx(full["hr@10"], abs=1e-6)
    assert stats["ndcg@10_fused"] == pytest.approx(full["ndcg@10"], abs=1e-6)

    def seq_only_fuse(parts):
        w = torch.zeros(*parts[0].shape[:-1], 3)
        w[..., 0] = 1
        return w

    monkeypatch.setattr(m, "_fuse", seq_only_fuse)
    gated = evaluate_ranking(m, ev, toy_split.n_items, pop, cfg, breakdowns=False)["overall"]
    monkeypatch.undo()
    assert stats["hr@10_seq_only"] == pytest.approx(gated["hr@10"], abs=1e-6)
    assert stats["ndcg@10_seq_only"] == pytest.approx(gated["ndcg@10"], abs=1e-6)
    assert stats["ndcg@10_delta"] == pytest.approx(full["ndcg@10"] - gated["ndcg@10"], abs=1e-6)
    # the intents do move this model's rankings, so the two rankings above really differ
    assert stats["top10_changed_frac"] > 0 and stats["overlap@10_mean"] < 1
    assert full["ndcg@10"] != gated["ndcg@10"]
    # the rest is well formed and JSON-able
    json.dumps(stats)
    for key in ("weight_personal_mean", "weight_public_mean", "share_personal_top10", "share_public_top10",
                "share_intent_top10", "entropy_personal_norm_mean", "entropy_public_norm_mean",
                "coverage_personal_frac", "top10_intent_mass_share", "alive_frac"):
        assert 0 <= stats[key] <= 1, key
    assert stats["norm_seq_mean"] > 0 and stats["ratio_personal_mean"] > 0
    assert stats["alive_latents"] == N_LAT - 4 and stats["n_candidates"] == N_LAT
    assert 0 < stats["coverage_personal"] <= N_LAT - 4
    assert stats["slots_public_mean"] == 3 and 0 < stats["slots_personal_mean"] <= 4
    assert (stats["retrieval"], stats["public"], stats["fusion"], stats["intent_source"]) == \
        ("tfidf", "frequent", "gate", "sae")


def test_batching_and_sampling(toy_split):
    m = make(toy_split, fusion="attention")
    a = saerec_branch_stats(m, toy_split, "valid", max_users=None, batch_size=4)
    b = saerec_branch_stats(m, toy_split, "valid", max_users=None, batch_size=256)
    for key, value in a.items():
        assert value == pytest.approx(b[key], abs=1e-6) if isinstance(value, float) else value == b[key], key
    s = saerec_branch_stats(m, toy_split, "valid", max_users=5, seed=3)
    assert s["users"] == 5 and s["users_total"] == a["users"]
    assert saerec_branch_stats(m, toy_split, "valid", max_users=5, seed=3) == s


def test_disabled_personal_branch_and_keep_list(toy_split):
    m = make(toy_split, use_personal=False)
    s = saerec_branch_stats(m, toy_split, max_users=None)
    assert s["weight_personal_mean"] == 0 and s["weight_personal_std"] == 0
    assert s["norm_personal_mean"] == 0 and s["share_personal_top10"] == 0
    assert s["entropy_personal_mean"] is None and s["personal_empty_frac"] is None
    assert s["coverage_personal"] == 0 and s["coverage_personal_frac"] == 0 and s["top10_intent_mass_share"] == 0
    assert s["weight_public_mean"] > 0 and s["entropy_public_mean"] > 0
    # keep-list: coverage counts only kept latents, as a fraction of them
    keep = np.zeros(N_LAT, dtype=bool)
    keep[:6] = True
    k = saerec_branch_stats(make(toy_split, keep=keep), toy_split, max_users=None)
    assert k["n_candidates"] == 6 and 0 < k["coverage_personal"] <= 6
    assert k["coverage_personal_frac"] == k["coverage_personal"] / 6


def test_run_wrapper_refuses_other_models_and_passes_settings(toy_split, monkeypatch):
    sas = SASRec(toy_split.n_users, toy_split.n_items, SASRecConfig(hidden=16, layers=1, heads=2, max_len=8))
    monkeypatch.setattr(ranking_eval, "load_ranking_run", lambda run_dir, **kw: (RunConfig(model="sasrec"), sas, toy_split))
    with pytest.raises(ValueError, match="is a 'sasrec' run; branch statistics need a saerec run"):
        ranking_eval.branch_stats_for_run("some/run")
    m = make(toy_split)
    cfg = RunConfig(model="saerec")
    cfg.eval.mask_history = False
    monkeypatch.setattr(ranking_eval, "load_ranking_run", lambda run_dir, **kw: (cfg, m, toy_split))
    out = ranking_eval.branch_stats_for_run("some/run", stage="valid", max_users=None)
    assert out["model"] == "saerec" and out["run_dir"] == "some/run" and out["mask_history"] is False
    assert out["hr@10_fused"] == pytest.approx(saerec_branch_stats(m, toy_split, "valid", None,
                                                                   mask_history=False)["hr@10_fused"])
    with pytest.raises(TypeError, match="need a SAERec"):
        saerec_branch_stats(sas, toy_split)


def test_script_prints_one_row_per_run_and_reports_failures(toy_split, tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from tests.script_loader import load_script

    script = load_script("experiments/saerec_realtext/branch_stats.py", "saerec_branch_stats_script")
    stats = saerec_branch_stats(make(toy_split, use_personal=False), toy_split, max_users=None)
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    (good / "config.yaml").write_text("model: saerec\nmodel_params: {use_personal: false}\n")

    def fake(run, **kw):
        if Path(run) == bad:
            raise ValueError("not a saerec run")
        assert kw["max_users"] is None and kw["stage"] == "valid"
        return {"run_dir": str(run), "model": "saerec", **stats}

    monkeypatch.setattr(ranking_eval, "branch_stats_for_run", fake)
    rc = script.main([str(good), str(bad), "--stage", "valid", "--max-users", "0", "--json", str(tmp_path / "o.json")])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert rc == 1 and "not a saerec run" in err and len(lines) == 3
    row = [c.strip() for c in lines[2].strip("|").split("|")]
    assert row[0] == "saerec [use_personal=False]" and row[1] == "tfidf/frequent/gate/sae"
    assert row[2] == "30" and row[3] == "0.000" and row[13] == "-"  # no personal branch: no entropy
    saved = json.loads((tmp_path / "o.json").read_text())
    assert saved[str(good)]["hr@10_fused"] == stats["hr@10_fused"]
