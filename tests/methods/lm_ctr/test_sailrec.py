"""SAILRec on a tiny random 4-layer LM: dual-side warm-up, steering, saving, and the attention diagnostic."""

import json

import numpy as np
import pytest
import torch

from semcollab.config.ctr import CTRTrainConfig
from semcollab.methods.lm_ctr.sailrec import user_profiles
from semcollab.models.base import info_nce
from semcollab.tasks.ctr import build_ctr_model, predict, prepare_ctr

from ...tasks.test_ctr import toy_ctr

FAST = {"batch_size": 16, "score_batch_size": 32, "max_length": 96, "lm_lr": 1e-3, "lora_rank": 2,
        "checkpoint_every": 0, "mf_dim": 8, "proj_hidden": 16, "mf_epochs": 2, "mapper_hidden": 16,
        "mapper_heads": 2, "n_user_tokens": 2, "warmup_epochs": 5, "warmup_batch_size": 8, "soft_max_rows": 48}


@pytest.fixture(scope="module")
def tiny_lm4(tmp_path_factory):
    """A random 4-layer Llama with 'yes'/'no' words (so a depth schedule has shallow, middle and deep layers)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.conftest import WORDS, _tokenizer

    path = tmp_path_factory.mktemp("tiny-lm4")
    tok = _tokenizer(path)
    tok.add_tokens(["yes", "no"])
    tok.save_pretrained(path)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                 num_key_value_heads=1, intermediate_size=64, max_position_embeddings=256,
                                 pad_token_id=0)).save_pretrained(path)
    assert len(tok) == 7 + len(WORDS)
    return path


@pytest.fixture(scope="module")
def split():
    return prepare_ctr(toy_ctr(rows=160), history_len=3)


def _fit(split, lm, **params):
    torch.manual_seed(0)
    model = build_ctr_model("sailrec", {"lm": str(lm), **FAST, **params}, split)
    fit = model.fit_ctr(split, CTRTrainConfig(progress=False, device="cpu"), torch.device("cpu"), log=None)
    return model, fit


def test_info_nce_hand_computed():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # cosines [[1, 0], [0, 1]] / 0.5 -> each row: -log(e^2 / (e^2 + e^0))
    expected = -np.log(np.exp(2) / (np.exp(2) + 1))
    assert float(info_nce(a, a, 0.5)) == pytest.approx(expected, rel=1e-6)


def test_user_profiles_read_only_training_likes(split):
    profiles = user_profiles(split, n_words=3, n_recent=2)
    assert len(profiles) == split.n_users
    train = split.parts["train"]
    u = int(train.users[np.argmax(train.labels)])
    assert profiles[u].startswith("User profile: likes movies from the") and "Movie" in profiles[u]
    # a user who appears only outside training gets the empty profile
    only_test = set(split.parts["test"].users) - set(train.users) - set(split.parts["valid"].users)
    for v in only_test:
        assert profiles[v] == "User profile: no liked movies yet."


def test_sailrec_trains_aligns_and_reloads(split, tiny_lm4):
    model, fit = _fit(split, tiny_lm4)
    part = split.parts["test"]
    p = model.prompt(part.history[0], int(part.items[0]))
    assert p.count("<User_ID>") == 2 and p.count("<Item_ID>") == 1 and "<Warm_ID>" not in p
    assert set(fit.stages) == {"step1-lora", "mf", "warmup", "sailrec-joint"}
    w = fit.stages["warmup"]
    assert w["last"]["item"] < w["first"]["item"] and w["last"]["user"] < w["first"]["user"]  # InfoNCE falls
    # 4 layers: round(.3 * 4) = 1 suppressed, round(.2 * 4) = 1 enhanced (+1.0), two neutral
    assert model.schedule == [-1.0, 0.0, 0.0, 1.0]
    probs = predict(model, part)
    state = model.trainable_state_dict()
    assert {"user_mapper.queries", "proj.0.weight", "item_semantic", "user_semantic"} <= set(state)
    assert any("lora_" in k for k in state)
    fresh = build_ctr_model("sailrec", {"lm": str(tiny_lm4), **FAST}, split)
    fresh.load_trainable_state_dict(state)
    np.testing.assert_allclose(predict(fresh, part), probs, atol=1e-6)


def test_ablations_change_what_they_should(split, tiny_lm4):
    full, _ = _fit(split, tiny_lm4)
    no_user, fit = _fit(split, tiny_lm4, user_align=False)
    assert set(fit.stages["warmup"]["last"]) == {"item"}
    no_steer, _ = _fit(split, tiny_lm4, steering="neutral")
    assert no_steer.schedule == [0.0] * 4
    part = split.parts["test"]
    base = predict(full, part)
    for other in (no_user, no_steer):
        assert not np.allclose(predict(other, part), base)


def test_lora_lr_sets_the_joint_stage_lora_rate_apart_from_the_mappers(split, tiny_lm4):
    part = split.parts["test"]
    default, _ = _fit(split, tiny_lm4)
    soft_lr = default.cfg.soft_lr
    same, _ = _fit(split, tiny_lm4, lora_lr=soft_lr)  # its own checkpoint, the same trajectory
    np.testing.assert_allclose(predict(same, part), predict(default, part), atol=1e-5)
    slow, _ = _fit(split, tiny_lm4, lora_lr=soft_lr * 1e-3)
    assert not np.allclose(predict(slow, part), predict(default, part), atol=1e-5)
    frozen, _ = _fit(split, tiny_lm4, train_lora=False)  # LoRA as step 1 left it

    def lora_shift(model):
        after, start = model.trainable_state_dict(), frozen.trainable_state_dict()
        return sum(float((after[k] - start[k]).abs().sum()) for k in after if "lora_" in k)

    # Adam moves each weight by about its rate per step: 1e-3 of the rate moves LoRA ~1e-3 as far
    assert lora_shift(default) > 0 and lora_shift(slow) < 0.01 * lora_shift(default)
    for bad in (0, float("inf")):
        with pytest.raises(ValueError, match="lora_lr' (must be a finite number > 0|expects a finite number)"):
            build_ctr_model("sailrec", {"lm": str(tiny_lm4), **FAST, "lora_lr": bad}, split)
    with pytest.raises(ValueError, match="lora_lr' is set but train_lora is false"):
        build_ctr_model("sailrec", {"lm": str(tiny_lm4), **FAST, "lora_lr": 1e-4, "train_lora": False}, split)


def test_full_suppression_cuts_the_collaborative_tokens_off(split, tiny_lm4):
    model = build_ctr_model("sailrec", {"lm": str(tiny_lm4), **FAST, "steering": "suppress",
                                        "steer_magnitude": 1e9}, split)
    part = split.parts["test"]
    before = predict(model, part)
    with torch.no_grad():
        model.mf.user_emb.weight.normal_()
        model.mf.item_emb.weight.normal_()
    np.testing.assert_allclose(predict(model, part), before, atol=1e-6)
    neutral = build_ctr_model("sailrec", {"lm": str(tiny_lm4), **FAST, "steering": "neutral"}, split)
    before = predict(neutral, part)
    with torch.no_grad():
        neutral.mf.user_emb.weight.normal_()
    assert not np.allclose(predict(neutral, part), before)


@pytest.mark.slow  # 53 s; `ctr attention` also runs in tests/test_readme_commands.py
def test_attention_diagnostic_on_saved_runs(tmp_path, tiny_lm4):
    from typer.testing import CliRunner

    from semcollab.cli import app

    from ...tasks.test_ctr_cli import write_collm_folder

    data = write_collm_folder(tmp_path / "collm", rows=(64, 24, 24))
    out = tmp_path / "runs"
    common = [f"--data.path={data}", "--data.allow_pickle=true", "--train.progress=false",
              f"--model_params.lm={tiny_lm4}",
              "--model_params.mf_dim=8", "--model_params.proj_hidden=16", "--model_params.mf_epochs=2",
              "--model_params.batch_size=16", "--model_params.lora_rank=2"]
    r = CliRunner().invoke(app, ["ctr", "train", "--model", "collm", f"--output_dir={out / 'collm'}", *common])
    assert r.exit_code == 0, r.output
    sail = [*common, "--model_params.mapper_hidden=16", "--model_params.mapper_heads=2",
            "--model_params.warmup_epochs=2", "--model_params.steer_magnitude=3.0"]
    r = CliRunner().invoke(app, ["ctr", "train", "--model", "sailrec", f"--output_dir={out / 'sailrec'}", *sail])
    assert r.exit_code == 0, r.output
    reports = {}
    for name in ("collm", "sailrec"):
        (run,) = (out / name).iterdir()
        r = CliRunner().invoke(app, ["ctr", "attention", str(run), "--rows", "20", "--out", str(tmp_path / name),
                                     "--data.allow_pickle=true"])
        assert r.exit_code == 0, r.output
        reports[name] = json.loads((tmp_path / name / "attention.json").read_text())
        assert (tmp_path / name / "attention.png").stat().st_size > 1000
    rc, rs = reports["collm"], reports["sailrec"]
    assert rc["kinds"] == ["user", "item"] and rc["layers"] == 4 and rc["max_abs_total_minus_1"] < 1e-5
    assert rs["steering_bias"] == [-3.0, 0.0, 0.0, 3.0] and "unsteered" not in rc
    # the same weights without the bias: the suppressed first layer holds more mass there, the enhanced last less
    on, off = rs["groups"]["all"]["answer"], rs["unsteered"]["groups"]["all"]["answer"]
    for k in rs["kinds"]:
        assert on[k][0] < off[k][0] and on[k][3] > off[k][3]
    assert (tmp_path / "sailrec" / "attention_unsteered.png").exists()
    for rep in (rc, rs):
        g = rep["groups"]["all"]
        assert g["rows"] == 20
        for k in rep["kinds"]:
            assert all(0.0 <= v <= 1.0 for v in g["answer"][k])
    # a model with soft tokens only: a plain TALLRec run is refused with a clear message
    r = CliRunner().invoke(app, ["ctr", "train", "--model", "tallrec", f"--output_dir={out / 'tallrec'}",
                                 *common[:3], "--model_params.batch_size=16", "--model_params.lora_rank=2"])
    assert r.exit_code == 0, r.output
    (run,) = (out / "tallrec").iterdir()
    r = CliRunner().invoke(app, ["ctr", "attention", str(run), "--rows", "4", "--data.allow_pickle=true"])
    assert r.exit_code != 0 and "collaborative soft tokens" in r.output


def test_time_cap_stops_and_the_same_call_resumes_to_the_uninterrupted_result(split, tiny_lm4, tmp_path,
                                                                              monkeypatch):
    from semcollab.tasks.ctr import TrainingIncomplete

    params = {"lm": str(tiny_lm4), **FAST, "max_minutes": 1e-9}
    cfg = CTRTrainConfig(progress=False, device="cpu")
    stops = 0
    for _ in range(40):
        torch.manual_seed(0)  # as run_ctr does
        model = build_ctr_model("sailrec", params, split)
        try:
            fit = model.fit_ctr(split, cfg, torch.device("cpu"), log=None)
            break
        except TrainingIncomplete:
            stops += 1
    assert stops >= 3 and fit.stages["sailrec-joint"]["resumed_from_step"] is not None  # stopped inside the joint stage
    resumed = predict(model, split.parts["test"])
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(tmp_path / "fresh-cache"))  # no checkpoint: one uninterrupted run
    uninterrupted, _ = _fit(split, tiny_lm4)
    np.testing.assert_allclose(predict(uninterrupted, split.parts["test"]), resumed, atol=1e-6)
