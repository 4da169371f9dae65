"""ReaEmb pipeline on a tiny S3-Rec-like dataset and the tiny random Llama: stages, resume, tables, CLI."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from semcollab.cli import app
from semcollab.config import ConfigError
from semcollab.methods.reaemb import (
    ReaEmbIncomplete,
    ReaEmbPipelineConfig,
    kv_reuse_benchmark,
    load_pipeline_config,
    reaemb_table,
    stage2_candidates,
    stage_state,
    train_reaemb,
)
from semcollab.train.lm_steps import CheckpointMismatchError

from ...tolerance import assert_close_rounding, transformer_reductions

TITLES = ["toy story", "golden eye", "space war", "the love", "a movie", "war of the eye", "love story",
          "space movie", "golden war", "the toy", "drama of love", "action movie"]
CATS = ["comedy", "action", "thriller", "drama"]
N_ITEMS = len(TITLES)


def write_toy_s3rec(directory, name="Toy", missing_text=(12,)):
    """``<name>.txt`` (user item item ...), ``<name>_items.csv`` and ``<name>_item2attributes.json``;
    item 12 has no text (it gets a zero row)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for u in range(1, 13):
        start = int(rng.integers(1, N_ITEMS + 1))
        seq = [(start + t - 1) % N_ITEMS + 1 for t in range(6)]
        lines.append(" ".join(map(str, [u, *seq])))
    (directory / f"{name}.txt").write_text("\n".join(lines) + "\n")
    rows = ["item_id,source_id,title,categories"]
    for i in range(1, N_ITEMS + 1):
        if i in missing_text:
            rows.append(f"{i},S{i},,")
        else:
            rows.append(f"{i},S{i},{TITLES[i - 1]},{CATS[i % 4]}")
    (directory / f"{name}_items.csv").write_text("\n".join(rows) + "\n")
    (directory / f"{name}_item2attributes.json").write_text(json.dumps({str(i): [i % 3] for i in range(1, 13)}))
    return directory / f"{name}.txt"


@pytest.fixture
def toy_s3rec(tmp_path):
    return write_toy_s3rec(tmp_path / "data")


def base_overrides(data_path, lm, out, **extra):
    ov = {"dataset": "s3rec:Toy", "lm": str(lm), "data.path": str(data_path), "data.user_k": 1, "data.item_k": 1,
          "output_dir": str(out), "progress": False, "device": "cpu", "seed": 3, "table_batch_size": 4,
          "encoder.max_length": 64,
          "stage1.max_steps": 3, "stage1.batch_size": 4, "stage1.lr": 1e-2, "stage1.warmup_ratio": 0.0,
          "stage1.lora_rank": 2, "stage1.lora_alpha": 4.0, "stage1.checkpoint_every": 0,
          "stage2.max_steps": 2, "stage2.batch_size": 2, "stage2.lr": 1e-2, "stage2.warmup_ratio": 0.0,
          "stage2.rollouts": 3, "stage2.n_random": 3, "stage2.max_anchors": 4, "stage2.checkpoint_every": 0}
    ov.update(extra)
    return [f"{k}={v}" for k, v in ov.items()]


def thought_tensors(run_dir, stage):
    from safetensors.torch import load_file

    return load_file(str(run_dir / stage / "final" / "reaemb.safetensors"))


def test_config_validates_and_loads_yaml(tmp_path):
    cfg = load_pipeline_config(None, ["stage1.max_steps=5", "encoder.max_length=64"], dataset="s3rec:Toy")
    assert cfg.stage1.max_steps == 5 and cfg.encoder.max_length == 64 and cfg.dataset == "s3rec:Toy"
    assert cfg.lm == "smollm2-135m" and cfg.stage1.lora_rank == 8 and cfg.stage2.rollouts == 8
    assert cfg.data.name == "s3rec:Toy"  # the saved config names the data it ran on, not DataConfig's default
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"lm": "x", "stage2": {"n_random": 4}}))
    assert load_pipeline_config(path).stage2.n_random == 4
    with pytest.raises(ConfigError, match="stage1.lr"):
        load_pipeline_config(None, ["stage1.lr=0"])
    with pytest.raises(ConfigError, match="stage2.noise_units"):
        load_pipeline_config(None, ["stage2.noise_units=percent"])
    with pytest.raises(ConfigError, match="unknown config key"):
        load_pipeline_config(None, ["stage1.lora_rnk=2"])
    with pytest.raises(ConfigError, match="encoder.prompt"):
        load_pipeline_config(None, ["encoder.prompt=no slot"])
    assert isinstance(load_pipeline_config(ReaEmbPipelineConfig()), ReaEmbPipelineConfig)


def test_stage2_candidates_use_training_sequences_only(toy_s3rec, tiny_causal_lm, tmp_path):
    from semcollab.methods.reaemb import load_data

    cfg = load_pipeline_config(None, base_overrides(toy_s3rec, tiny_causal_lm, tmp_path / "r", **{
        "stage2.max_anchors": 100}))
    data = load_data(cfg)
    split = data.split
    cands = stage2_candidates(cfg, data)
    train_pairs = set()
    for seq in split.train_sequences():
        s = set(seq.tolist())
        train_pairs |= {(a, b) for a in s for b in s if a != b}
    assert len(cands.anchors) > 0
    for a, row in zip(cands.anchors, cands.candidates):
        assert (int(a), int(row[0])) in train_pairs  # the positive co-occurs in TRAINING sequences
        assert data.texts[int(a) - 1].strip()  # anchors without text are dropped
    assert 12 not in cands.anchors.tolist()


def test_train_resume_tables_and_cache(toy_s3rec, tiny_causal_lm, tmp_path, monkeypatch):
    full_dir = tmp_path / "full"
    res = train_reaemb(None, log=None, overrides=base_overrides(toy_s3rec, tiny_causal_lm, full_dir))
    assert res.stages["stage1"]["steps"] == 3 and res.stages["stage2"]["steps"] == 2
    for stage in ("stage1", "stage2"):
        assert (full_dir / stage / "final" / "state.json").exists()
        assert res.timing[stage]["finished"] and res.timing[stage]["seconds"] > 0
        assert res.timing[stage]["peak_rss_mb"] > 0
    assert (full_dir / "stage1" / "final" / "adapter" / "adapter_config.json").exists()
    s1 = thought_tensors(full_dir, "stage1")
    assert "log_temp" in s1 and any(k.startswith("thought.") for k in s1)
    assert not torch.equal(s1["thought.o.weight"], thought_tensors(full_dir, "stage2")["thought.o.weight"])

    # interrupted after every step by a tiny time cap: each rerun continues; the end equals the full run
    cut_dir = tmp_path / "cut"
    cut = base_overrides(toy_s3rec, tiny_causal_lm, cut_dir, **{"stage1.max_minutes": 1e-9,
                                                                 "stage2.max_minutes": 1e-9})
    calls = 0
    while True:
        calls += 1
        try:
            train_reaemb(None, log=None, overrides=cut)
            break
        except ReaEmbIncomplete as exc:
            assert "not finished" in str(exc) and "rerun" in str(exc)
        assert calls < 10
    # one step per call; the call that finishes stage 1 also runs stage 2's first step: 3 + 2 - 1 calls
    assert calls == 4
    timing = json.loads((cut_dir / "timing.json").read_text())
    assert len(timing["stage1"]["calls"]) == 3 and timing["stage1"]["calls"][0]["stopped_by"] == "max_minutes"
    for stage in ("stage1", "stage2"):
        a, b = thought_tensors(full_dir, stage), thought_tensors(cut_dir, stage)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), stage
        assert stage_state(full_dir, stage)["losses"] == stage_state(cut_dir, stage)["losses"]
        assert stage_state(full_dir, stage)["state_sha256"] == stage_state(cut_dir, stage)["state_sha256"]
    # a finished run: the same command returns at once
    again = train_reaemb(None, log=None, overrides=cut)
    assert again.stages["stage2"]["steps"] == 2
    # other trajectory settings in the same folder are refused, and leave its config.yaml alone
    saved = (cut_dir / "config.yaml").read_text()
    with pytest.raises(CheckpointMismatchError, match="stage1"):
        train_reaemb(None, log=None, overrides=base_overrides(toy_s3rec, tiny_causal_lm, cut_dir,
                                                              **{"stage1.lr": 5e-3}))
    with pytest.raises(CheckpointMismatchError, match="stage2"):
        train_reaemb(None, log=None, overrides=base_overrides(toy_s3rec, tiny_causal_lm, cut_dir,
                                                              **{"stage2.rollouts": 4}))
    assert (cut_dir / "config.yaml").read_text() == saved

    # tables: n_items + 1 rows, zero padding row, zero row for the item without text, cached
    path2, meta2 = reaemb_table(full_dir, stage="stage2", log=None)
    t2 = np.load(path2)
    assert t2.shape == (N_ITEMS + 1, 32) and t2.dtype == np.float32 and meta2["cached"] is False
    assert not t2[0].any() and not t2[12].any() and np.abs(t2[1:12]).min(1).max() > 0
    assert meta2["empty_texts"] == 1 and meta2["items_per_second"] > 0 and meta2["peak_rss_mb"] > 0

    import semcollab.methods.reaemb.table as reaemb_table_module

    def boom(*a, **k):
        raise AssertionError("the cached table must not be recomputed")

    with monkeypatch.context() as m:
        m.setattr(reaemb_table_module, "generate_table", boom)
        path2b, meta2b = reaemb_table(full_dir, stage="stage2", log=None, out=tmp_path / "t" / "s2.npy")
    assert meta2b["cached"] is True and meta2b["key"] == meta2["key"]
    np.testing.assert_array_equal(np.load(path2b), t2)
    assert json.loads((tmp_path / "t" / "s2.json").read_text())["item_ids_sha256"] == meta2["item_ids_sha256"]
    # the interrupted run's table is the same table (same state hash: same cache entry)
    assert reaemb_table(cut_dir, stage="stage2", log=None)[1]["key"] == meta2["key"]

    path1, meta1 = reaemb_table(full_dir, stage="stage1", log=None)
    plain_path, plain_meta = reaemb_table(full_dir, stage="plain", log=None)
    t1, tp = np.load(path1), np.load(plain_path)
    assert tp.shape == t1.shape == t2.shape and plain_meta["mode"] == "plain"
    assert np.abs(tp - t1).max() > 1e-4 and np.abs(t1 - t2).max() > 1e-4
    # two_pass gives the same table as kv_reuse, under its own cache key
    p_two, m_two = reaemb_table(full_dir, stage="stage2", mode="two_pass", log=None)
    assert m_two["key"] != meta2["key"]
    # the two passes' rounding: the tiny Llama (hidden 32, FFN 64, 2 heads) over a prompt of about 32 tokens (tests/tolerance.py)
    cfg = SimpleNamespace(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1)
    assert_close_rounding(np.load(p_two), t2, transformer_reductions(cfg, 32), "two_pass vs kv_reuse table")
    # a plain table needs no run
    p_norun, m_norun = reaemb_table(None, "s3rec:Toy", "plain", log=None,
                                    overrides=base_overrides(toy_s3rec, tiny_causal_lm, tmp_path / "x"))
    assert m_norun["key"] == plain_meta["key"] and m_norun["cached"] is True
    with pytest.raises(ConfigError, match="needs a run folder"):
        reaemb_table(None, "s3rec:Toy", "stage1", log=None)

    # the table drives SASRec through the existing train command (items checked against the table's meta)
    r = CliRunner().invoke(app, ["train", "--model", "sasrec", "--dataset", "s3rec:Toy", f"--data.path={toy_s3rec}",
                                 "--data.user_k=1", "--data.item_k=1", "--train.epochs=2", "--train.progress=false",
                                 f"--output_dir={tmp_path / 'runs'}", f"--model_params.item_table={path2b}",
                                 "--model_params.table_pca=8", "--model_params.hidden=16", "--model_params.heads=1",
                                 "--eval.ks=[5,10]", "--train.metric=ndcg@10"])
    assert r.exit_code == 0, r.output


def test_stage2_needs_stage1(toy_s3rec, tiny_causal_lm, tmp_path):
    with pytest.raises(ConfigError, match="stage 1 has not finished"):
        train_reaemb(None, stages="stage2", log=None, overrides=base_overrides(toy_s3rec, tiny_causal_lm, tmp_path))
    with pytest.raises(ConfigError, match="stages"):
        train_reaemb(None, stages="stage3", log=None, overrides=base_overrides(toy_s3rec, tiny_causal_lm, tmp_path))


def test_kv_reuse_benchmark(toy_s3rec, tiny_causal_lm, tmp_path):
    rep = kv_reuse_benchmark(None, "s3rec:Toy", n_items=6, batch_size=3, log=None,
                             overrides=base_overrides(toy_s3rec, tiny_causal_lm, tmp_path / "b"))
    assert rep["equal"] and rep["items"] == 6 and rep["max_rel_diff"] <= 1e-4
    assert set(rep["seconds"]) == {"plain", "two_pass", "kv_reuse"}
    assert rep["ratio_two_pass_to_plain"] > 0 and rep["ratio_kv_reuse_to_plain"] > 0


def test_cli_train_table_bench_exit_codes(toy_s3rec, tiny_causal_lm, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    ov = [f"--{o}" for o in base_overrides(toy_s3rec, tiny_causal_lm, out, **{"stage1.max_minutes": 1e-9,
                                                                               "stage1.max_steps": 2,
                                                                               "stage2.max_steps": 1})
          if not o.startswith(("dataset=", "lm="))]
    cmd = ["reaemb", "train", "--dataset", "s3rec:Toy", "--lm", str(tiny_causal_lm), *ov]
    r = runner.invoke(app, cmd)
    assert r.exit_code == 3 and "not finished" in r.output, r.output
    codes = [r.exit_code]
    while r.exit_code == 3 and len(codes) < 6:
        r = runner.invoke(app, cmd)
        codes.append(r.exit_code)
    assert codes[-1] == 0 and codes == [3, 0], (codes, r.output)  # stage 2 has no time cap here
    assert stage_state(out, "stage2")["steps"] == 1
    # tables
    r = runner.invoke(app, ["reaemb", "table", str(out), "--stage", "stage2", "--out", str(tmp_path / "s2.npy")])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "s2.npy").shape == (N_ITEMS + 1, 32)
    plain = ["reaemb", "table", "--plain", "--dataset", "s3rec:Toy", "--lm", str(tiny_causal_lm),
             "--out", str(tmp_path / "plain.npy"), *[o for o in ov if o.startswith(("--data.", "--encoder."))]]
    r = runner.invoke(app, plain)
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "plain.npy").shape == (N_ITEMS + 1, 32)
    r = runner.invoke(app, ["reaemb", "table", "--stage", "stage1", "--dataset", "s3rec:Toy"])
    assert r.exit_code == 2 and "run folder" in r.output
    r = runner.invoke(app, ["reaemb", "table", str(tmp_path), "--stage", "stage1"])
    assert r.exit_code == 2 and "config.yaml" in r.output
    r = runner.invoke(app, ["reaemb", "bench-kv", str(out), "--n-items", "4", "--batch-size", "2",
                            "--json-out", str(tmp_path / "bench.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "bench.json").read_text())["equal"] is True
    # a bad setting is a one-line error with exit code 2
    r = runner.invoke(app, ["reaemb", "train", "--dataset", "s3rec:Toy", "--stage1.lr=-1"])
    assert r.exit_code == 2 and "stage1.lr" in r.output
