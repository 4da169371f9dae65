"""Adding a ranking model and a dataset format from outside the package: one plugin module with two decorators,
found through SEMCOLLAB_PLUGINS by ``semcollab.run``, the CLI (another process) and the run loader; and the
registry's own rules (duplicates, tasks, aliases, unknown names)."""

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

import semcollab
from semcollab import registry
from semcollab.config import DataConfig
from semcollab.data import DataError, load_raw
from semcollab.errors import ConfigError, SemcollabError, UnknownNameError
from semcollab.models import REGISTRY, build_model, canonical_name
from semcollab.models.base import Recommender

PLUGIN = "semcollab_toy_plugin"
PLUGIN_SOURCE = textwrap.dedent('''
    """A ranking model and a dataset format that live outside semcollab."""
    from dataclasses import dataclass
    from pathlib import Path

    import pandas as pd
    import torch
    import torch.nn.functional as F
    from torch import nn

    from semcollab.data import RawDataset
    from semcollab.models.base import Recommender
    from semcollab.registry import register, register_source


    @dataclass
    class ToyConfig:
        weight: float = 1.0  # how much the counted popularity counts beside the learned bias


    @register("toy", task="ranking", aliases=("toy-pop",))
    class ToyPopBias(Recommender):
        """log(1 + training count) * weight + a learned item bias (trained with BPR on the pairs)."""

        Config = ToyConfig
        batch_kind = "pairs"
        natural_loss = "bpr"
        supported_losses = ("bpr",)

        def __init__(self, n_users, n_items, cfg=None, popularity=None):
            super().__init__(n_users, n_items)
            self.cfg = cfg or ToyConfig()
            pop = torch.zeros(n_items + 1) if popularity is None else torch.as_tensor(popularity, dtype=torch.float32)
            self.register_buffer("log_pop", torch.log1p(pop))
            self.bias = nn.Parameter(torch.zeros(n_items + 1))

        @classmethod
        def from_split(cls, split, cfg):
            return cls(split.n_users, split.n_items, cfg, split.item_popularity())

        def score(self, users, seqs):
            return (self.cfg.weight * self.log_pop + self.bias).unsqueeze(0).expand(len(users), -1).clone()

        def loss(self, batch):
            return -F.logsigmoid(self.bias[batch["pos"]] - self.bias[batch["neg"]]).mean()


    @register_source("toysrc", argument="<path>", help="a CSV of user,item,timestamp")
    def load_toy_csv(cfg, arg):
        path = Path(arg)
        df = pd.read_csv(path, dtype=str)
        inter = pd.DataFrame({"user": df["user"], "item": df["item"], "timestamp": df["timestamp"].astype("int64")})
        return RawDataset("toysrc", inter, pd.DataFrame({"item": pd.unique(inter["item"])}), [], [path])
''')


def write_csv(path, n_users=30, n_items=40, per_user=12, seed=0):
    """Users walk items in order from a random start (5-core survives; popularity is not flat)."""
    rng = np.random.default_rng(seed)
    rows = [(u, (int(rng.integers(1, n_items + 1)) + t - 1) % n_items + 1, 1000 * u + t)
            for u in range(1, n_users + 1) for t in range(per_user)]
    pd.DataFrame(rows, columns=["user", "item", "timestamp"]).to_csv(path, index=False)
    return path


@pytest.fixture
def clean_registry(monkeypatch):
    """The registry as the built-ins leave it; whatever a test registers is gone afterwards."""
    registry.list_models()  # built-ins imported before the copy
    for attr in ("_models", "_aliases", "_sources", "_source_aliases"):
        monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))
    monkeypatch.setattr(registry, "_plugin_modules", set(registry._plugin_modules))


@pytest.fixture
def plugin(tmp_path, monkeypatch, clean_registry):
    """The plugin module on sys.path and PYTHONPATH (for subprocesses), named by SEMCOLLAB_PLUGINS."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv(registry.PLUGINS_ENV, PLUGIN)
    sys.modules.pop(PLUGIN, None)
    yield folder
    sys.modules.pop(PLUGIN, None)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "semcollab", *args], capture_output=True, text=True, cwd=cwd,
                          env=os.environ.copy(), timeout=300)


def _load_and_recommend(run_dir):
    """The loaded run's model and its top-3 items for user '3', through ``semcollab.load_run``."""
    run = semcollab.load_run(run_dir)
    return run.model, [item for item, _ in run.recommend("3", 3)]


def test_a_plugin_model_and_source_run_through_the_api_the_cli_and_load_run(plugin, tmp_path):
    data = write_csv(tmp_path / "events.csv")
    fast = ["train.epochs=3", "train.progress=false", "train.lr=0.05"]
    res = semcollab.run(model="toy-pop", dataset=f"toysrc:{data}", overrides=[f"output_dir={tmp_path / 'api'}", *fast],
                        log=None)
    assert type(res.model).__name__ == "ToyPopBias" and res.config.model == "toy"
    assert float(res.model.bias.abs().sum()) > 0  # the plugin's loss was trained, not just its scores read
    api_metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert 0 <= api_metrics["test"]["overall"]["ndcg@10"] <= 1

    # the CLI in a fresh process finds both through SEMCOLLAB_PLUGINS / PYTHONPATH
    out = tmp_path / "cli"
    r = _cli("train", "--model", "toy", "--dataset", f"toysrc:{data}", *[f"--{o}" for o in fast],
             f"--output_dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    (run_dir,) = list(out.iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["overall"]["ndcg@10"] == api_metrics["test"]["overall"]["ndcg@10"]  # same seed, same run
    r = _cli("recommend", str(run_dir), "--user", "3", "--k", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr

    # load_run rebuilds the plugin model with the saved weights; its recommendations are the trained ranking
    net, top = _load_and_recommend(run_dir)
    assert type(net).__name__ == "ToyPopBias" and float(net.bias.abs().sum()) > 0
    assert len(top) == 3 and float(net.log_pop.max()) > 0


def test_a_plugin_source_is_listed_with_the_built_ins_and_a_bad_plugin_is_named(plugin, tmp_path, monkeypatch):
    with pytest.raises(DataError) as err:
        load_raw(DataConfig(name="nosuch"))
    assert str(err.value) == ("unknown dataset 'nosuch'; use ml-100k, ml-1m, s3rec:<Beauty|Sports_and_Outdoors|"
                              "Toys_and_Games|Yelp>, atomic:<name>, amazon, table or toysrc:<path>")
    with pytest.raises(DataError, match="unknown dataset 'toysrc'"):  # the source needs its argument
        load_raw(DataConfig(name="toysrc"))
    monkeypatch.setenv(registry.PLUGINS_ENV, f"{PLUGIN}, no_such_plugin_module")
    with pytest.raises(ConfigError, match="SEMCOLLAB_PLUGINS: cannot import plugin module 'no_such_plugin_module'"):
        registry.list_models()


# ------------------------------------------------------------------ the registry's rules
@dataclass
class TinyConfig:
    size: int = 2


def _model_class(name="Tiny"):
    return type(name, (Recommender,), {"__module__": __name__, "__qualname__": name})


def test_unknown_names_list_the_available_ones(clean_registry):
    with pytest.raises(UnknownNameError) as err:
        canonical_name("nope")
    assert isinstance(err.value, KeyError) and isinstance(err.value, SemcollabError)
    assert str(err.value) == f"unknown model 'nope'; available: {registry.list_models('ranking')}"
    assert {"pop", "mf-bpr", "sasrec", "gru4rec", "bert4rec", "semantic", "fusion", "saerec"} <= set(REGISTRY)
    with pytest.raises(UnknownNameError, match="is a ranking model, not a ctr one"):
        registry.model_entry("sasrec", task="ctr")
    with pytest.raises(UnknownNameError, match=r"unknown dataset source 'nope'; available: \['amazon', 'atomic'"):
        registry.source_entry("nope")


def test_aliases_and_case_resolve_to_one_name(clean_registry):
    assert [canonical_name(n) for n in ("MF", "bpr", "Popularity", "SASRec")] == ["mf-bpr", "mf-bpr", "pop", "sasrec"]
    assert "mf" not in REGISTRY and REGISTRY["mf-bpr"][0].__name__ == "MFBPR"  # aliases are no keys of the table
    cls = registry.register("tiny", config=TinyConfig, aliases=("tiny-model",))(_model_class())
    assert registry.model_entry("TINY-MODEL").cls is cls and registry.model_entry("tiny").aliases == ("tiny-model",)
    with pytest.raises(ConfigError, match="alias 'tiny-model' of 'other' is already taken by 'tiny'"):
        registry.register("other", config=TinyConfig, aliases=("tiny-model",))(_model_class("Other"))
    with pytest.raises(ConfigError, match="alias 'sasrec' of 'other' is already taken"):
        registry.register("other", config=TinyConfig, aliases=("sasrec",))(_model_class("Other"))
    with pytest.raises(ConfigError, match="model name 'mf' is already an alias of 'mf-bpr'"):
        registry.register("mf", config=TinyConfig)(_model_class("Other"))
    with pytest.raises(ConfigError, match="aliases must be a tuple"):
        registry.register("other", config=TinyConfig, aliases="oth")


def test_duplicates_bad_tasks_and_bad_names_are_refused(clean_registry):
    with pytest.raises(ConfigError, match=r"model 'sasrec' is already registered by semcollab\.models\.sasrec\.SASRec"):
        registry.register("sasrec", config=TinyConfig)(_model_class())
    cls = _model_class()
    registry.register("tiny", config=TinyConfig)(cls)
    assert registry.register("tiny", config=TinyConfig)(cls) is cls  # the same class again (a re-import) is fine
    with pytest.raises(ConfigError, match=r"task must be one of \['ranking', 'ctr', 'item-table'\], got 'rank'"):
        registry.register("tiny2", task="rank", config=TinyConfig)
    for bad in ("Tiny", "a:b", " ", ""):
        with pytest.raises(ConfigError, match="lower-case string without ':'"):
            registry.register(bad, config=TinyConfig)
    with pytest.raises(ConfigError, match="give Tiny a Config"):
        registry.register("tiny3")(_model_class())
    with pytest.raises(ConfigError, match="task must be one of"):
        registry.list_models("rank")

    def load(cfg, arg):
        return None

    with pytest.raises(ConfigError, match="dataset source 'table' is already registered by semcollab.data.sources"):
        registry.register_source("table")(load)
    with pytest.raises(ConfigError, match="dataset alias 'beauty' of 'mine' is already taken by 's3rec:Beauty'"):
        registry.register_source("mine", aliases={"beauty": "mine"})(load)
    with pytest.raises(ConfigError, match="alias 'short' must stand for 'mine'"):
        registry.register_source("mine", aliases={"short": "other:x"})
    with pytest.raises(ConfigError, match="kind must be one of"):
        registry.register_source("mine", kind="clicks")


def test_dataset_specs_resolve_as_before(clean_registry):
    def found(spec):
        hit = registry.find_source(spec)
        return hit and (hit[0].name, hit[1])

    assert found("ML-100K") == ("ml-100k", None) and found("table") == ("table", None)
    assert found("S3REC:Beauty") == ("s3rec", "Beauty") and found("beauty") == ("s3rec", "Beauty")
    assert found("Toys") == ("s3rec", "Toys_and_Games") and found("atomic:My.Data") == ("atomic", "My.Data")
    assert found("collm") == ("collm-ml-1m", None) and registry.source_entry("collm-ml-1m").kind == "ctr"
    for unknown in ("atomic", "s3rec", "ml-100k:x", "collm:x", "nosuch", "beauty:x"):
        assert found(unknown) is None, unknown
    with pytest.raises(DataError, match="unknown dataset 'collm-ml-1m'"):  # click data is no interaction source
        load_raw(DataConfig(name="collm-ml-1m"))


def test_the_models_package_imports_no_method():
    code = ("import sys, semcollab.models; "
            "print(sorted(m for m in sys.modules if m.startswith('semcollab.methods')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_build_model_still_builds_each_built_in(toy_split):
    for name in ("pop", "mf", "sasrec"):
        assert isinstance(build_model(name, {}, toy_split), Recommender)
