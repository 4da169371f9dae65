"""Typed settings of a CTR run (``semcollab ctr train``), checked when built like every other config."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import allowed, at_least, device_option, epoch_bounds_check, positive


@dataclass
class CTRDataConfig:
    name: str = "collm-ml-1m"  # collm-ml-1m | any rating dataset of semcollab.data (label = rating > 3)
    path: str | None = None
    history_len: int = at_least(10, 1)  # most recent history items a model sees (the CoLLM prompt uses 10)
    max_train_rows: int | None = at_least(None, 1)  # CPU budgets: a fixed random subset (recorded in the run)
    max_valid_rows: int | None = at_least(None, 1)
    max_test_rows: int | None = at_least(None, 1)
    subsample_seed: int = at_least(0, 0)
    # read a CoLLM-format pickle other than the known CoLLM ML-1M split (unpickling runs the file's code)
    allow_pickle: bool = False


@dataclass
class CTRTrainConfig:
    epochs: int = at_least(100, 1)
    batch_size: int = at_least(1024, 1)
    lr: float = positive(1e-3)
    weight_decay: float = at_least(0.0, 0, integer=False)
    patience: int = at_least(5, 1)  # evaluations without a better validation AUC before stopping
    min_epochs: int = at_least(0, 0)  # the patience stops no run before this epoch
    seed: int = at_least(42, 0)
    device: str = device_option()
    max_minutes: float | None = positive(None)  # summed over resumed calls
    progress: bool = True
    # a saved run writes a resume checkpoint at most this often (0: every epoch; None: never); embedding models only
    checkpoint_minutes: float | None = at_least(1.0, 0, integer=False)

    def _check(self):
        yield from epoch_bounds_check(self)


@dataclass
class CTRRunConfig:
    task: str = allowed("ctr", lambda v: v == "ctr", "ctr (this schema is the CTR task's)")
    model: str = "mf"
    model_params: dict = field(default_factory=dict)  # checked against the model's own config class
    data: CTRDataConfig = field(default_factory=CTRDataConfig)
    train: CTRTrainConfig = field(default_factory=CTRTrainConfig)
    output_dir: str = allowed("runs/ctr", lambda v: v.strip() != "", "a folder path")
    save_model: bool = True


__all__ = ["CTRDataConfig", "CTRRunConfig", "CTRTrainConfig"]
