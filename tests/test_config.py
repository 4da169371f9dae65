import pytest

from semcollab.config import ConfigError, RunConfig, load_config


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: gru4rec\ntrain:\n  epochs: 7\n  lr: 0.01\neval:\n  ks: [1, 5]\n")
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
    from semcollab.api import _as_config

    cfg = _as_config(None, "semantic", "ml-100k", ["model_params.recency_decay=0.9",
                                                   "model_params.template={title} ({year})"])
    assert cfg.model_params == {"recency_decay": 0.9, "template": "{title} ({year})"}
    with pytest.raises(ConfigError, match="model_params.hiden"):
        _as_config(None, "sasrec", "ml-100k", ["model_params.hiden=3"])
