"""Issue 33 peer: RecTools 0.19's UniSRec (``rectools.fast_transformers.UniSRecModel``) on semcollab's split.

The model is RecTools' own code, trained by its own ``fit``; semcollab only supplies the data and scores it:

* training interactions = ``split.train_sequences()`` (user, item, timestamp = position in the user's time-ordered
  training sequence, so RecTools' stable sort by timestamp gives back semcollab's order exactly);
* the frozen item text vectors = semcollab's own (the MiniLM cache with the dataset's default template, as the
  fusion / AlphaFuse models get them; or ``--item-table``), indexed by semcollab item index. Semcollab item indices
  are passed to RecTools as its external item ids, so its ``pretrained_item_embeddings`` (indexed by external id)
  is semcollab's table as is; :func:`align_to_rectools` is the same re-ordering RecTools' ``align_embeddings`` does;
* evaluation = semcollab's :func:`~semcollab.evaluation.ranking.evaluate_ranking` (full ranking over all items,
  history masked, head/tail cut by ``head_frac``, short/long users at the median) on ``split.eval_set("valid")``
  and ``("test")`` (test history = train + valid item), through :class:`UniSRecRanker`, which turns RecTools'
  ``encode_last`` / ``project_all`` into semcollab's ``score`` contract. Items never seen in training (RecTools
  keeps no row for them) score ``-inf``.

``UniSRecModel`` trains on raw tensors (``fit(user_ids, item_ids, timestamps)``), not on a ``rectools.Dataset``;
the ``rectools.dataset`` pipeline is not used. RecTools is installed by ``experiments/peers/install_rectools.sh``
into its own venv; run this with that venv's python.

    PYTHONPATH=src OMP_NUM_THREADS=1 /work/venvs/rectools/bin/python experiments/peers/rectools_unisrec.py \\
        --dataset s3rec:Beauty --epochs 10 --seed 1 --out runs/peers/rectools-unisrec
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import yaml

from semcollab.config import DataConfig, EvalConfig, to_dict
from semcollab.data import load_split
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.models.alphafuse import SemanticItemSettings, semantic_item_vectors
from semcollab.runs.files import write_file_atomic
from semcollab.runs.record import cpu_model, git_hash, write_run_dir

MODEL_NAME = "rectools-unisrec"
# UniSRecModel's own defaults (rectools 0.19.0), stated so a run records what it trained with
RECTOOLS_DEFAULTS = {"n_factors": 256, "projection_hidden": 512, "n_blocks": 2, "n_heads": 1, "session_max_len": 200,
                     "dropout": 0.1, "adaptor_dropout": 0.2, "adaptor_type": "pca", "use_adaptor_ffn": True,
                     "ffn_type": "conv1d", "ffn_expansion": 1, "epochs": 10, "lr": 1e-4, "optimizer": "adamw",
                     "scheduler": None, "loss": "softmax", "n_negatives": None, "batch_size": 128,
                     "train_min_user_interactions": 2}


# ------------------------------------------------------------------------------------ pure numpy: ids and order
def train_interactions(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat ``(users, items, timestamps)`` int64 arrays of per-user time-ordered sequences; the timestamp is the
    position in the user's sequence, so any stable sort by (user, timestamp) returns each sequence unchanged."""
    lens = np.array([len(s) for s in sequences], dtype=np.int64)
    users = np.repeat(np.arange(len(sequences), dtype=np.int64), lens)
    items = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if lens.sum() else np.zeros(0, np.int64)
    stamps = np.concatenate([np.arange(n, dtype=np.int64) for n in lens]) if lens.sum() else np.zeros(0, np.int64)
    return users, items, stamps


def align_to_rectools(vectors: np.ndarray, unique_items: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` (indexed by semcollab item index) in RecTools' internal order: row 0 = padding (zeros),
    row j = the item whose external id is ``unique_items[j - 1]`` (what ``align_embeddings`` builds)."""
    unique_items = np.asarray(unique_items, dtype=np.int64)
    out = np.zeros((len(unique_items) + 1, vectors.shape[1]), dtype=vectors.dtype)
    out[1:] = vectors[unique_items]
    return out


def internal_lookup(unique_items: np.ndarray, n_items: int) -> np.ndarray:
    """``lookup[semcollab index] -> RecTools internal id`` (1..n; 0 for padding and items RecTools never saw)."""
    lookup = np.zeros(n_items + 1, dtype=np.int64)
    lookup[np.asarray(unique_items, dtype=np.int64)] = np.arange(1, len(unique_items) + 1)
    return lookup


def scores_to_semcollab(internal_scores: torch.Tensor, unique_items: torch.Tensor, n_items: int) -> torch.Tensor:
    """``(B, n_internal + 1)`` RecTools scores -> ``(B, n_items + 1)`` in semcollab's item order; padding and items
    without a RecTools row get ``-inf`` (never recommended; a miss when they are the target)."""
    out = torch.full((internal_scores.shape[0], n_items + 1), -torch.inf, dtype=internal_scores.dtype,
                     device=internal_scores.device)
    out[:, unique_items.to(internal_scores.device)] = internal_scores[:, 1:]
    return out


def left_pad(seqs: torch.Tensor, length: int) -> torch.Tensor:
    """Left-padded ``(B, L)`` ids re-padded (or cut, keeping the last items) to exactly ``length`` columns: UniSRec's
    positions count from the left of its ``session_max_len`` window, so scoring must use the training width."""
    if seqs.shape[1] >= length:
        return seqs[:, -length:]
    return torch.nn.functional.pad(seqs, (length - seqs.shape[1], 0))


# ------------------------------------------------------------------------------------------- RecTools side
class UniSRecRanker:
    """semcollab's ranking contract (``eval``, ``score(users, seqs)``, ``max_len``) over a fitted UniSRecModel."""

    padding_invariant = False  # positions are absolute from the left of the window: always score at full width

    def __init__(self, model, n_items: int):
        self.model, self.n_items = model, n_items
        self.max_len = model.session_max_len
        self.unique_items = model.item_id_mapping.long()
        self.lookup = torch.from_numpy(internal_lookup(self.unique_items.numpy(), n_items))

    def eval(self):
        self.model.net.eval()
        return self

    @torch.no_grad()
    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        net = self.model.net
        ids = self.lookup.to(seqs.device)[left_pad(seqs, self.max_len)]
        hidden = net.encode_last(ids)
        return scores_to_semcollab(hidden @ net.project_all().T, self.unique_items, self.n_items)


def fit_unisrec(split, vectors: np.ndarray, params: dict, seed: int, log=print, select: dict | None = None):
    """Train RecTools' UniSRecModel on ``split``'s training sequences; returns ``(model, fit_record)``.

    ``select`` (``{"every": n, "patience": p, "eval_cfg": EvalConfig, "device": str, "max_minutes": m}``) puts
    semcollab's stopping rule around RecTools' fixed-epoch ``fit``: validation NDCG@10 (semcollab's evaluator, the
    valid split) after every ``n``-th epoch, the best state kept and restored at the end, training stopped after
    ``p`` evaluations without a new best, so the peer's epoch count is picked on validation as every semcollab
    row's is. RecTools' own ``patience`` watches a loss on the training sequences, which is why it is not used.
    ``max_minutes`` (None: no cap) ends training at the first evaluation past that wall time (``stopped_by``
    "time": not converged)."""
    import pytorch_lightning as pl
    from rectools.fast_transformers import UniSRecModel

    class EpochTimer(pl.Callback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_train_epoch_start(self, trainer, module):
            self._t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.seconds.append(time.perf_counter() - self._t0)
            loss = trainer.callback_metrics.get("train_loss")
            log(f"epoch {len(self.seconds)}: {self.seconds[-1]:.1f} s"
                + (f", train_loss={float(loss):.4f}" if loss is not None else ""))

    class ValidationPick(pl.Callback):
        """Keeps the state of the best validation NDCG@10 and stops after ``patience`` evaluations without one."""

        def __init__(self, every: int, patience: int, eval_cfg: EvalConfig, device: str, max_minutes=None):
            self.every, self.patience, self.eval_cfg, self.device = every, patience, eval_cfg, device
            self.deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
            self.timed_out = False
            self.curve: list[tuple[int, float]] = []
            self.best: tuple[int, float, dict] | None = None

        def on_train_epoch_end(self, trainer, module):
            epoch = trainer.current_epoch + 1
            if epoch % self.every:
                return
            model._net = module.net  # the ranker reads model.net; RecTools sets it only after fit
            was_training = module.net.training
            ranker = UniSRecRanker(model, split.n_items).eval()
            valid = evaluate_ranking(ranker, split.eval_set("valid"), split.n_items, pop, self.eval_cfg,
                                     self.device)["overall"]["ndcg@10"]
            module.net.train(was_training)
            self.curve.append((epoch, float(valid)))
            log(f"epoch {epoch}: valid NDCG@10={valid:.4f}")
            if self.best is None or valid > self.best[1]:
                state = {k: v.detach().clone() for k, v in module.net.state_dict().items()}
                self.best = (epoch, float(valid), state)
            elif len([e for e, _ in self.curve if e > self.best[0]]) >= self.patience:
                trainer.should_stop = True
            if self.deadline is not None and time.monotonic() > self.deadline and not trainer.should_stop:
                trainer.should_stop = self.timed_out = True

    class TimedUniSRec(UniSRecModel):
        def _make_trainer(self, max_epochs, val_dl=None):
            trainer = super()._make_trainer(max_epochs, val_dl)
            trainer.callbacks.append(timer)
            if picker is not None:
                trainer.callbacks.append(picker)
            return trainer

    timer = EpochTimer()
    pop = split.item_popularity() if select else None  # for the validation evaluations alone
    picker = None if not select else ValidationPick(select["every"], select["patience"], select["eval_cfg"],
                                                    select["device"], select.get("max_minutes"))
    pl.seed_everything(seed, verbose=False)
    users, items, stamps = train_interactions(split.train_sequences())
    model = TimedUniSRec(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)), device="cpu", **params)
    t0 = time.perf_counter()
    model.fit(torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(stamps))
    seconds = time.perf_counter() - t0
    n_seen = len(model.item_id_mapping)
    best_epoch, stopped_by = len(timer.seconds), "epochs"
    if picker is not None and picker.best is not None:
        best_epoch = picker.best[0]
        model.net.load_state_dict(picker.best[2])
        stopped_by = ("time" if picker.timed_out else
                      "patience" if len(timer.seconds) < params["epochs"] else "epochs")
    fit = {"epochs_run": len(timer.seconds), "best_epoch": best_epoch, "stopped_by": stopped_by,
           "train_seconds": seconds, "epoch_seconds": timer.seconds,
           "seconds_per_epoch": float(np.mean(timer.seconds)) if timer.seconds else None,
           "items_in_training": n_seen, "items_without_row": int(split.n_items - n_seen),
           "users_trained": int(sum(len(s) >= params.get("train_min_user_interactions", 2)
                                    for s in split.train_sequences()))}
    if picker is not None:
        fit["valid_curve"] = picker.curve
        fit["select"] = {"every": select["every"], "patience": select["patience"], "metric": "ndcg@10",
                         "max_minutes": select.get("max_minutes")}
    return model, fit


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("rectools", "pytorch-lightning", "torch", "numpy", "pandas", "scipy", "semcollab"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def cpu_info() -> str:
    name = cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return f"{name}; torch threads {torch.get_num_threads()}; {os.cpu_count()} cores; load avg {load}"


def run(split, vectors: np.ndarray, params: dict, seed: int, eval_cfg: EvalConfig, log=print,
        valid_every: int = 0, patience: int = 20, max_minutes: float | None = None) -> dict:
    """Fit and evaluate (valid and test, semcollab's evaluator); returns the result record. ``valid_every`` > 0:
    the epoch is picked on validation (see :func:`fit_unisrec`'s ``select``)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"  # Lightning hands the net back on the CPU
    select = ({"every": valid_every, "patience": patience, "eval_cfg": eval_cfg, "device": device,
               "max_minutes": max_minutes}
              if valid_every > 0 else None)
    model, fit = fit_unisrec(split, vectors, params, seed, log, select=select)
    ranker = UniSRecRanker(model, split.n_items)
    model.net.to(device)
    pop = split.item_popularity()
    t0 = time.perf_counter()
    valid, test = (evaluate_ranking(ranker, split.eval_set(part), split.n_items, pop, eval_cfg, device)
                   for part in ("valid", "test"))
    fit["eval_seconds"] = time.perf_counter() - t0
    return {"valid": valid, "test": test, "fit": fit, "params": params, "seed": seed, "versions": versions(),
            "hardware": cpu_info()}


def write_outputs(result: dict, data_cfg: DataConfig, eval_cfg: EvalConfig, out: Path, fingerprint: str,
                  text: dict) -> Path:
    """A run folder ``semcollab table`` / ``report`` read (config.yaml, metrics.json, run.json) plus
    ``result.json`` (everything, one file)."""
    params = {k: v for k, v in result["params"].items() if k != "epochs"}
    cfg = {"task": "ranking", "model": MODEL_NAME, "model_params": {**params, **text},
           "data": {k: v for k, v in to_dict(data_cfg).items() if k not in ("cache", "cache_dir")},
           "train": {"seed": result["seed"], "epochs": result["params"]["epochs"]}, "eval": to_dict(eval_cfg)}

    def write(tmp: Path) -> None:
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        (tmp / "metrics.json").write_text(json.dumps({"valid": result["valid"], "test": result["test"]}, indent=2))
        record = {"seed": result["seed"], "git": git_hash(), "versions": result["versions"],
                  "hardware": result["hardware"], "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "data_fingerprint": fingerprint, "fit": result["fit"], "peer": "RecTools UniSRecModel"}
        (tmp / "run.json").write_text(json.dumps(record, indent=2, default=str))
        (tmp / "result.json").write_text(json.dumps({**record, "config": cfg, "valid": result["valid"],
                                                     "test": result["test"]}, indent=2, default=str))

    return write_run_dir(out, MODEL_NAME, data_cfg.name, write)


def summary(result: dict) -> str:
    t = result["test"]
    parts = [f"test NDCG@10={t['overall']['ndcg@10']:.4f} HR@10={t['overall']['hr@10']:.4f}"]
    for g in ("tail", "short_users"):
        if t.get(g) and "ndcg@10" in t[g]:
            parts.append(f"{g} NDCG@10={t[g]['ndcg@10']:.4f} HR@10={t[g]['hr@10']:.4f} (n={t[g]['n_users']})")
    f = result["fit"]
    parts.append(f"{f['epochs_run']} epochs (best {f['best_epoch']}, stopped by {f['stopped_by']}), "
                 f"{f['seconds_per_epoch']:.1f} s/epoch")
    return "; ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="s3rec:Beauty")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epochs", type=int, default=RECTOOLS_DEFAULTS["epochs"])
    p.add_argument("--max-len", type=int, default=None, help="session_max_len (RecTools default 200)")
    p.add_argument("--batch-size", type=int, default=None, help="RecTools default 128")
    p.add_argument("--lr", type=float, default=None, help="RecTools default 1e-4")
    p.add_argument("--loss", default=None, help="softmax (RecTools default) | sampled_softmax | BCE | gBCE")
    p.add_argument("--n-negatives", type=int, default=None, help="for sampled losses")
    p.add_argument("--encoder", default="minilm", help="semcollab text encoder (its cache is used)")
    p.add_argument("--item-table", default=None, help=".npy (n_items + 1, d) instead of the encoder")
    p.add_argument("--valid-every", type=int, default=0,
                   help="> 0: validation NDCG@10 every N epochs, the best epoch kept (default 0: RecTools' fixed epochs)")
    p.add_argument("--patience", type=int, default=20, help="with --valid-every: evaluations without a new best")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="with --valid-every: stop training at the first evaluation past this wall time")
    p.add_argument("--head-frac", type=float, default=EvalConfig().head_frac)
    p.add_argument("--out", default="runs/peers/rectools-unisrec", help="folder of run folders")
    p.add_argument("--no-run-dir", action="store_true", help="only print (and --json)")
    p.add_argument("--json", default=None, help="also write the result JSON here")
    a = p.parse_args(argv)
    if a.valid_every < 0 or a.patience < 1:
        p.error(f"--valid-every must be >= 0 and --patience >= 1, got {a.valid_every} and {a.patience}")
    if a.max_minutes is not None and (a.max_minutes <= 0 or not a.valid_every):
        p.error(f"--max-minutes needs --valid-every > 0 and a positive value, got {a.max_minutes}")

    params = {"epochs": a.epochs}
    for key, val in (("session_max_len", a.max_len), ("batch_size", a.batch_size), ("lr", a.lr), ("loss", a.loss),
                     ("n_negatives", a.n_negatives)):
        if val is not None:
            params[key] = val
    data_cfg = DataConfig(name=a.dataset)
    eval_cfg = EvalConfig(ks=[5, 10, 20], mask_history=True, head_frac=a.head_frac)
    split = load_split(data_cfg)
    text = SemanticItemSettings(encoder=a.encoder, item_table=a.item_table)
    vectors = semantic_item_vectors(split, text)
    stated = {**RECTOOLS_DEFAULTS, **params}
    print(f"{a.dataset}: {split.n_users} users, {split.n_items} items, text {vectors.shape}; UniSRecModel {stated}",
          flush=True)
    result = run(split, vectors, stated, a.seed, eval_cfg, log=lambda s: print(s, flush=True),
                 valid_every=a.valid_every, patience=a.patience, max_minutes=a.max_minutes)
    result["text"] = {"encoder": a.encoder, "item_table": text.item_table, "dim": int(vectors.shape[1])}
    print(summary(result), flush=True)
    if not a.no_run_dir:
        text_params = {"encoder": a.encoder} if not a.item_table else {"item_table": text.item_table}
        d = write_outputs(result, data_cfg, eval_cfg, Path(a.out), split.fingerprint(), text_params)
        print(f"run folder {d}", flush=True)
    if a.json:
        write_file_atomic(Path(a.json), json.dumps(result, indent=2, default=str).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
