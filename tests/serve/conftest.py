"""Tiny runs trained once per test module: SASRec (ranking), SAERec (intents) and MF (CTR)."""

import csv
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import write_atomic

pytest.importorskip("fastapi")
HOSTILE = '<img src=x onerror="window.__pwned=1"> Movie & <b>3</b>'


def write_serve_data(directory: Path) -> Path:
    """The toy atomic data, with item 3's title hostile markup (it must come back and render as text)."""
    write_atomic(directory)
    path = directory / "toy.item"
    items = pd.read_csv(path, sep="\t")
    items.loc[items["item_id:token"] == 3, "movie_title:token_seq"] = HOSTILE
    items.to_csv(path, sep="\t", index=False, quoting=csv.QUOTE_NONE)
    return directory


@pytest.fixture(scope="module")
def serve_env(tmp_path_factory):
    """Its own cache dir for the whole module (the autouse per-test cache starts after module fixtures)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMCOLLAB_CACHE", str(tmp_path_factory.mktemp("serve-cache")))
        yield tmp_path_factory.mktemp("serve")


def train_sasrec(base: Path) -> Path:
    from semcollab.tasks.ranking import run_ranking

    data = write_serve_data(base / "toy")
    res = run_ranking("sasrec", "atomic:toy", overrides=[
        f"data.path={data}", "train.epochs=2", "train.progress=false", f"output_dir={base / 'runs'}",
        "model_params.hidden=16", "model_params.layers=1", "model_params.max_len=8"], log=None)
    return res.run_dir


def train_ctr_mf(base: Path) -> Path:
    from semcollab.tasks.ctr import run_ctr
    from tests.tasks.test_ctr_cli import write_collm_folder

    data = write_collm_folder(base / "collm")
    res = run_ctr("mf", overrides=[f"data.path={data}", "data.allow_pickle=true", "train.epochs=2",
                                   "train.progress=false", f"output_dir={base / 'ctr-runs'}", "model_params.dim=8"],
                  log=None)
    return res.run_dir


@pytest.fixture(scope="module")
def sasrec_run(serve_env):
    return train_sasrec(serve_env)


@pytest.fixture(scope="module")
def ctr_run(serve_env):
    return train_ctr_mf(serve_env)
