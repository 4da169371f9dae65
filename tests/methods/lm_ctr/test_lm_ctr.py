"""TALLRec, CoLLM and SeLLa-Rec end to end on a tiny random LM (plumbing, not quality)."""

import json

import numpy as np
import pytest
import torch

from semcollab.config.ctr import CTRTrainConfig
from semcollab.tasks.ctr import TrainingIncomplete, build_ctr_model, predict, prepare_ctr

from ...tasks.test_ctr import toy_ctr

FAST = {"batch_size": 16, "score_batch_size": 32, "max_length": 64, "lm_lr": 1e-3, "lora_rank": 2,
        "checkpoint_every": 0}


@pytest.fixture
def split():
    return prepare_ctr(toy_ctr(rows=160), history_len=3)


def _fit(name, split, lm, **params):
    torch.manual_seed(0)
    model = build_ctr_model(name, {"lm": str(lm), **FAST, **params}, split)
    model.fit_ctr(split, CTRTrainConfig(progress=False, device="cpu"), torch.device("cpu"), log=None)
    return model


def test_tallrec_prompt_and_training(split, tiny_yes_no_lm):
    model = _fit("tallrec", split, tiny_yes_no_lm)
    row = split.parts["test"]
    p = model.prompt(row.history[0], int(row.items[0]))
    assert p.startswith("MovieList: ") and "TargetMovie: Movie" in p and p.endswith(" Answer:")
    probs = predict(model, row)
    assert probs.shape == (len(row),) and ((probs > 0) & (probs < 1)).all()
    # only LoRA tensors are saved for the LM; reloading them reproduces the scores
    state = model.trainable_state_dict()
    assert state and all("lora_" in k for k in state)
    fresh = build_ctr_model("tallrec", {"lm": str(tiny_yes_no_lm), **FAST}, split)
    fresh.load_trainable_state_dict(state)
    np.testing.assert_allclose(predict(fresh, row), probs, atol=1e-6)


def test_collm_soft_tokens_reach_the_lm_and_mapping_trains(split, tiny_yes_no_lm):
    torch.manual_seed(0)
    model = build_ctr_model("collm", {"lm": str(tiny_yes_no_lm), **FAST, "mf_dim": 8, "proj_hidden": 16,
                                      "mf_epochs": 3, "soft_max_rows": 40}, split)
    fit = model.fit_ctr(split, CTRTrainConfig(progress=False, device="cpu"), torch.device("cpu"), log=None)
    assert fit.stages["step1-lora"]["steps"] == 10 and fit.stages["collm-mapping"]["steps"] == 3  # 160 / 40 rows
    part = split.parts["test"]
    assert "<User_ID>" in model.prompt(part.history[0], int(part.items[0]))
    before = predict(model, part)
    with torch.no_grad():
        model.mf.user_emb.weight.mul_(-1.0)  # only the collaborative vectors change
    assert not np.allclose(predict(model, part), before)
    assert not any(p.requires_grad for n, p in model.lm.named_parameters())  # LoRA frozen after step 1


def test_sellarec_and_its_ablations(split, tiny_yes_no_lm):
    base = dict(mf_dim=8, proj_hidden=16, mf_epochs=2)
    full = _fit("sellarec", split, tiny_yes_no_lm, **base)
    part = split.parts["test"]
    assert "<Warm_ID>" in full.prompt(part.history[0], int(part.items[0]))
    assert full.semantic[1:].abs().sum() > 0 and full.semantic[0].abs().sum() == 0  # padding row stays zero
    no_warm = _fit("sellarec", split, tiny_yes_no_lm, use_warm=False, **base)
    assert "<Warm_ID>" not in no_warm.prompt(part.history[0], int(part.items[0]))
    no_align = _fit("sellarec", split, tiny_yes_no_lm, align_weight=0.0, **base)
    rand = _fit("sellarec", split, tiny_yes_no_lm, proj_init="random", **base)
    preds = [predict(m, part) for m in (full, no_warm, no_align, rand)]
    for other in preds[1:]:
        assert not np.allclose(preds[0], other)
    # the saved state holds LoRA, MF, projection, <Warm_ID> map and the semantic table; it reloads exactly
    state = full.trainable_state_dict()
    assert {"semantic", "warm.weight", "mf.user_emb.weight"} <= set(state)
    fresh = build_ctr_model("sellarec", {"lm": str(tiny_yes_no_lm), **FAST, **base}, split)
    fresh.load_trainable_state_dict(state)
    np.testing.assert_allclose(predict(fresh, part), preds[0], atol=1e-6)


def test_time_cap_stops_cleanly_and_the_same_call_resumes(split, tiny_yes_no_lm, tmp_path, monkeypatch):
    params = {"lm": str(tiny_yes_no_lm), **FAST, "max_minutes": 1e-9}
    cfg = CTRTrainConfig(progress=False, device="cpu")
    stops = 0
    for _ in range(20):
        torch.manual_seed(0)  # as run_ctr does: the same initial adapter on every call
        model = build_ctr_model("tallrec", params, split)
        try:
            model.fit_ctr(split, cfg, torch.device("cpu"), log=None)
            break
        except TrainingIncomplete as exc:
            assert "run the same command again" in str(exc)
            stops += 1
    assert stops >= 2  # it really stopped and continued
    resumed = predict(model, split.parts["test"])
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(tmp_path / "fresh-cache"))  # no checkpoint: one uninterrupted run
    uninterrupted = _fit("tallrec", split, tiny_yes_no_lm)
    np.testing.assert_allclose(predict(uninterrupted, split.parts["test"]), resumed, atol=1e-6)


def test_ctr_cli_with_an_lm_model(tmp_path, tiny_yes_no_lm):
    from typer.testing import CliRunner

    from semcollab.cli import app

    from ...tasks.test_ctr_cli import write_collm_folder

    data = write_collm_folder(tmp_path / "collm", rows=(64, 24, 24))
    out = tmp_path / "runs"
    args = ["ctr", "train", "--model", "collm", f"--data.path={data}", "--data.allow_pickle=true", "--train.progress=false",
            f"--output_dir={out}",
            f"--model_params.lm={tiny_yes_no_lm}", "--model_params.mf_dim=8", "--model_params.proj_hidden=16",
            "--model_params.mf_epochs=2", "--model_params.batch_size=16", "--model_params.lora_rank=2"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    (run,) = out.iterdir()
    saved = json.loads((run / "metrics.json").read_text())
    r = CliRunner().invoke(app, ["ctr", "evaluate", str(run), "--data.allow_pickle=true"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{"):])
    assert res["all"]["logloss"] == pytest.approx(saved["test"]["all"]["logloss"], abs=1e-6)
    fit = json.loads((run / "run.json").read_text())["fit"]
    assert set(fit["stages"]) == {"step1-lora", "mf", "collm-mapping"}


def test_train_keys_an_lm_model_would_ignore_are_refused(tmp_path, tiny_yes_no_lm):
    from semcollab.config import ConfigError
    from semcollab.tasks.ctr import run_ctr

    with pytest.raises(ConfigError, match=r"'train.epochs' does not apply .* model_params.lm_epochs"):
        run_ctr("tallrec", "collm-ml-1m", overrides=["train.epochs=3", f"model_params.lm={tiny_yes_no_lm}",
                                                      f"data.path={tmp_path}"], log=None, save=False)
    with pytest.raises(ConfigError, match=r"'train.min_epochs' does not apply .* no equivalent"):
        run_ctr("tallrec", "collm-ml-1m", overrides=["train.min_epochs=3", f"model_params.lm={tiny_yes_no_lm}",
                                                      f"data.path={tmp_path}"], log=None, save=False)


def test_step1_key_changes_with_titles_and_seed(split, tiny_yes_no_lm):
    model = build_ctr_model("tallrec", {"lm": str(tiny_yes_no_lm), **FAST}, split)
    key = model.step1_key(split)
    model.titles = [t + "!" for t in model.titles]
    assert model.step1_key(split) != key
    other = build_ctr_model("tallrec", {"lm": str(tiny_yes_no_lm), **FAST, "seed": 1}, split)
    assert other.step1_key(split) != key
    # the initial adapter is drawn from model_params.seed alone, not from the global RNG
    torch.manual_seed(123)
    a = build_ctr_model("tallrec", {"lm": str(tiny_yes_no_lm), **FAST}, split).trainable_state_dict()
    torch.manual_seed(456)
    b = build_ctr_model("tallrec", {"lm": str(tiny_yes_no_lm), **FAST}, split).trainable_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sellarec_budget_settings_freeze_mf_and_start_warm_at_identity(split, tiny_yes_no_lm):
    base = dict(mf_dim=8, proj_hidden=16, mf_epochs=2, train_mf=False, warm_init="identity")
    model = build_ctr_model("sellarec", {"lm": str(tiny_yes_no_lm), **FAST, **base}, split)
    assert torch.equal(model.warm.weight, torch.eye(model.warm.weight.shape[0]))
    snapshot = {}

    def grab(*a, **k):  # the MF tables as step 2 left them
        res = orig(*a, **k)
        snapshot.update({k: v.clone() for k, v in model.mf.state_dict().items()})
        return res

    orig, model.fit_mf = model.fit_mf, grab
    model.fit_ctr(split, CTRTrainConfig(progress=False, device="cpu"), torch.device("cpu"), log=None)
    assert all(torch.equal(snapshot[k], v) for k, v in model.mf.state_dict().items())  # step 3 left MF alone
    assert not torch.equal(model.warm.weight, torch.eye(model.warm.weight.shape[0]))  # the map did learn


def test_long_prompts_drop_their_oldest_titles_not_their_end(split, tiny_yes_no_lm):
    model = build_ctr_model("tallrec", {"lm": str(tiny_yes_no_lm), **FAST}, split)
    hist = np.array([[1, 2, 3]])
    full, (n_full,) = model.fitted_prompts(hist, [4])
    model.cfg.max_length = n_full - 1  # one token too few: the oldest title must go
    (short,), (n_short,) = model.fitted_prompts(hist, [4])
    assert n_short <= n_full - 1 and short.endswith(full[0][-30:])
    assert model.titles[1] not in short.split("TargetMovie")[0] and model.titles[3] in short
