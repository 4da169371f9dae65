"""The item-table task: a model whose product is an item-embedding table (ReaEmb), which the ranking models read
(``--model_params.item_table=PATH``). Training is the method's own staged pipeline; this module makes it a run
like the others (``semcollab.run(model="reaemb", ...)``) and a saved run folder a :class:`Run`
(:class:`ItemTableRun`: the table, and nearest items to a user's history as recommendations)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import ConfigError, raw_config, resolve_device
from ..data import Split, load_split
from ..errors import IncompatibleRunError, RunFileError
from ..methods.reaemb import (
    ReaEmbPipelineConfig,
    build_encoder,
    load_pipeline_config,
    reaemb_table,
    stage_state,
    train_reaemb,
)
from ..models.text_table import item_ids_sha256
from ..registry import model_entry, register
from .base import Run, RunResult, read_json_file

TASK_KEYS = ("task", "model")  # the pipeline's dispatch keys, not settings of the ReaEmb schema


@register("reaemb", task="item-table", config=ReaEmbPipelineConfig)
class ReaEmb:
    """ReaEmb (:mod:`semcollab.methods.reaemb`) as an item-table model: ``train`` runs its stages into a run
    folder (resumable), ``table`` gives the catalogue's ``(n_items + 1, d)`` table of a finished stage."""

    @staticmethod
    def train(config, overrides: list[str], log):
        return train_reaemb(config, log=log, overrides=overrides)

    @staticmethod
    def table(run_dir: Path, stage: str) -> tuple[np.ndarray, dict]:
        path, meta = reaemb_table(run_dir, stage=stage, log=None)
        return np.load(path, allow_pickle=False), meta


def _without_task_keys(config, overrides: list[str]) -> tuple[object, list[str]]:
    """The config and overrides with ``task`` / ``model`` taken out (they chose this pipeline)."""
    if isinstance(config, (str, Path)):
        config = raw_config(config)
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k not in TASK_KEYS}
    rest = [o for o in overrides if o.lstrip("-").split("=", 1)[0] not in TASK_KEYS]
    return config, rest


def run_item_table(model: str | None = "reaemb", dataset: str | None = None, config=None,
                   overrides: list[str] | None = None, log=print, save: bool = True) -> RunResult:
    """Train the item-table model ``model`` (its stages resume from the run folder); ``metrics`` are the stages'
    seconds and peak memory, ``fit`` the method's training record."""
    if not save:
        raise ConfigError("an item-table run always writes its run folder (its stages resume from it); "
                          "save=False is not supported")
    entry = model_entry(model or "reaemb", task="item-table")
    config, ov = _without_task_keys(config, list(overrides or []))
    if dataset is not None:
        ov.append(f"dataset={dataset}")
    res = entry.cls.train(config, ov, log)
    cfg = load_pipeline_config(Path(res.run_dir) / "config.yaml")
    return RunResult("item-table", cfg, dict(res.timing), Path(res.run_dir), res)


def finished_stage(run_dir: Path) -> str:
    """The latest finished stage of a run folder (``plain``: none finished, the base LM's table)."""
    for stage in ("stage2", "stage1"):
        if stage_state(run_dir, stage) is not None:
            return stage
    return "plain"


class ItemTableRun(Run):
    """A saved item-table run: ``score`` is the cosine similarity of each item's vector to the mean vector of the
    user's history (train, valid and test events); items without a vector (no text) score -inf."""

    task = "item-table"

    def __init__(self, path: Path, config: ReaEmbPipelineConfig, split: Split, stage: str | None = None):
        super().__init__(path, config, read_json_file(Path(path) / "timing.json"))
        self.split, self.stage = split, stage or finished_stage(Path(path))
        self._table: np.ndarray | None = None
        self._model = None
        self._histories = None

    @property
    def item_vocab(self):
        return self.split.item_vocab

    def item_table(self) -> np.ndarray:
        """The ``(n_items + 1, d)`` float32 table of :attr:`stage` (row 0: padding; cached after the first call)."""
        if self._table is None:
            table, meta = ReaEmb.table(self.path, self.stage)
            if meta.get("item_ids_sha256") != item_ids_sha256(self.split.item_vocab.ids):
                raise IncompatibleRunError(f"{self.path}: the {self.stage} table's rows are not the items of "
                                           f"{self.split.name} as prepared now (item ids differ)")
            self._table = table
        return self._table

    @property
    def model(self):
        """The run's encoder (the LM with the stage's adapter and thought module merged), built on first use."""
        if self._model is None:
            self._model = build_encoder(self.config, "init" if self.stage == "plain" else self.stage, self.path,
                                        merge=True, device=resolve_device(self.config.device, key="device"))
        return self._model

    def seen(self, user: str) -> np.ndarray:
        if self._histories is None:
            self._histories = self.split._sequences([self.split.train, self.split.valid, self.split.test])
        return self._histories[self.split.user_vocab.encode(str(user))]

    def score(self, user: str, items: list[str] | None = None) -> np.ndarray:
        table = self.item_table().astype(np.float64)
        norms = np.linalg.norm(table, axis=1)
        hist = self.seen(user)
        hist = hist[norms[hist] > 0]  # items without text have no vector
        scores = np.full(len(table), -np.inf)
        if len(hist):
            query = table[hist].mean(0)
            query /= max(np.linalg.norm(query), 1e-12)
            ok = norms > 0
            scores[ok] = table[ok] @ query / norms[ok]
        scores[0] = -np.inf
        return scores[self.item_indices(items)]


def load_item_table_view(path: str | Path) -> ItemTableRun:
    """:class:`ItemTableRun` of a ReaEmb run folder; its data is prepared again from the run's config (the table's
    recorded item ids must be the data's)."""
    path = Path(path)
    try:
        cfg = load_pipeline_config(path / "config.yaml")
    except ConfigError as exc:
        raise RunFileError(f"{path / 'config.yaml'} is not an item-table run config ({exc})") from None
    return ItemTableRun(path, cfg, load_split(cfg.data, log=None))


__all__ = ["ItemTableRun", "ReaEmb", "finished_stage", "load_item_table_view", "run_item_table"]
