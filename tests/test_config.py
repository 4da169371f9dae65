import pytest

from semcollab.config import ConfigError, RunConfig, load_config


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: gru4rec\ntrain:\n  epochs: 7\n  lr: 0.01\n  metric: ndcg@5\neval:\n  ks: [1, 5]\n")
    cfg = load_config(p, ["--train.lr=1e-4", "data.user_k=3", "data.min_rating=null", "model_params.hidden=32"])
    assert isinstance(cfg, RunConfig)
    assert (cfg.model, cfg.train.epochs, cfg.train.lr, cfg.eval.ks) == ("gru4rec", 7, 1e-4, [1, 5])
    assert cfg.data.user_k == 3 and cfg.data.min_rating is None and cfg.model_params == {"hidden": "32"}


def test_unknown_keys_and_bad_types_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="train.epoch"):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="expects int"):
        load_config(None, ["train.epochs=three"])
    with pytest.raises(ConfigError, match="expects bool"):
        load_config(None, ["train.progress=3"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_model_params_are_typed_before_the_run_is_saved():
    from semcollab.tasks.ranking import _as_config

    cfg = _as_config(None, "semantic", "ml-100k", ["model_params.recency_decay=0.9",
                                                   "model_params.template={title} ({year})"])
    assert cfg.model_params == {"recency_decay": 0.9, "template": "{title} ({year})"}
    with pytest.raises(ConfigError, match="model_params.hiden"):
        _as_config(None, "sasrec", "ml-100k", ["model_params.hiden=3"])


@pytest.mark.parametrize("override, key", [
    ("train.epochs=0", "train.epochs"), ("train.batch_size=-5", "train.batch_size"), ("train.lr=0", "train.lr"),
    ("train.lr=-1e-3", "train.lr"), ("train.neg_samples=0", "train.neg_samples"), ("eval.ks=[-1,10]", "eval.ks"),
    ("eval.ks=[]", "eval.ks"), ("eval.ks=[10,10]", "eval.ks"), ("eval.chunk_size=0", "eval.chunk_size"),
    ("eval.n_negatives=0", "eval.n_negatives"), ("eval.head_frac=0", "eval.head_frac"),
    ("eval.head_frac=1.5", "eval.head_frac"), ("data.user_k=-1", "data.user_k"), ("data.item_k=-3", "data.item_k"),
    ("data.valid_frac=-0.5", "data.valid_frac"), ("data.test_frac=1.2", "data.test_frac"),
    ("data.valid_frac=0.5", "data.valid_frac"),  # with test_frac=0.6 below: 1.1 >= 1
    ("train.metric=ndcg@7", "train.metric"), ("train.metric=auc", "train.metric"), ("train.device=gpu", "train.device"),
    ("train.loss=focal", "train.loss"), ("eval.protocol=half", "eval.protocol"), ("data.split=random", "data.split"),
    ("train.patience=0", "train.patience"), ("train.max_minutes=0", "train.max_minutes"),
    ("train.min_epochs=-1", "train.min_epochs"), ("train.min_epochs=300", "train.min_epochs"),  # > epochs 200
])
def test_every_size_like_setting_is_range_checked_when_built(override, key):
    extra = ["data.test_frac=0.6"] if override == "data.valid_frac=0.5" else []
    with pytest.raises(ConfigError, match=f"'{key}'") as info:
        load_config(None, [override, *extra])
    assert "must" in str(info.value) or "does not compute" in str(info.value)


@pytest.mark.parametrize("model, override, key", [
    ("sasrec", "model_params.max_len=0", "model_params.max_len"), ("sasrec", "model_params.hidden=0", "model_params.hidden"),
    ("sasrec", "model_params.heads=0", "model_params.heads"), ("sasrec", "model_params.heads=3", "model_params.heads"),
    ("sasrec", "model_params.layers=0", "model_params.layers"), ("sasrec", "model_params.dropout=1.0", "model_params.dropout"),
    ("gru4rec", "model_params.max_len=-2", "model_params.max_len"), ("mf-bpr", "model_params.hidden=0", "model_params.hidden"),
    ("bert4rec", "model_params.mask_prob=0", "model_params.mask_prob"),
    ("saerec", "model_params.sae.k=0", "model_params.sae.k"), ("saerec", "model_params.sae.kind=dense", "model_params.sae.kind"),
    ("semantic", "model_params.recency_decay=0", "model_params.recency_decay"),
])
def test_model_settings_are_range_checked_before_any_data_is_read(model, override, key, tmp_path):
    import semcollab

    # the data path does not exist: a ConfigError (not a DataError) proves the check comes first
    with pytest.raises(ConfigError, match=f"'{key}'"):
        semcollab.run(model=model, dataset="table", overrides=[override, f"data.path={tmp_path / 'nope.csv'}"],
                      log=None, save=False)


def test_valid_defaults_and_boundaries_pass():
    cfg = load_config(None, ["data.user_k=0", "eval.ks=[1]", "train.metric=hr@1", "data.valid_frac=0.45",
                             "data.test_frac=0.45", "train.device=cuda:1"])
    assert cfg.eval.ks == [1] and cfg.data.user_k == 0


@pytest.mark.timeout(10)
def test_zero_window_no_longer_hangs():
    import numpy as np

    from semcollab.data.batches import sequence_windows

    with pytest.raises(ValueError, match="max_len"):
        sequence_windows([np.arange(1, 6)], 0)


def test_resolve_device_auto_and_refusal_name_the_key():
    import torch

    from semcollab.config import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="LMTrainConfig.device=cuda"):
            resolve_device("cuda", key="LMTrainConfig.device")
