"""Click-through-rate prediction: ``ctr train``, ``ctr evaluate``, ``ctr attention``, ``ctr table``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
import yaml
from rich.table import Table

from ..distributed import is_main, launch, without_nproc
from ..errors import RunFileError, TrainingIncomplete
from ..report.table import ctr_label
from ..tasks.base import read_run_record
from ..tasks.ctr import attention_diagnostic, evaluate_ctr_run, run_ctr
from ..textsafe import safe_text
from .common import (
    EXTRA,
    SEED,
    allow_pickle_arg,
    check_stage,
    console,
    dataset_option,
    handled,
    log,
    model_choices,
    named,
    required_run_arg,
)

ctr_app = typer.Typer(no_args_is_help=True, help="Click-through-rate prediction (CoLLM ML-1M split): AUC / UAUC.")


def ctr_rich_table(results: dict[str, dict], title: str):
    t = Table(title=safe_text(title))
    for col in ("model", "AUC", "UAUC", "log-loss", "warm AUC", "warm UAUC", "cold AUC", "cold UAUC"):
        t.add_column(col)

    def f(v):
        return "-" if v is None else f"{v:.4f}"

    for name, r in results.items():
        t.add_row(safe_text(name), f(r["all"].get("auc")), f(r["all"].get("uauc")), f(r["all"].get("logloss")),
                  *(f((r.get(part) or {}).get(key)) for part in ("warm", "cold") for key in ("auc", "uauc")))
    return t


@ctr_app.command("train", context_settings=EXTRA)
@handled
def ctr_train(ctx: typer.Context, model: str = typer.Option("mf", help=", ".join(model_choices("ctr"))),
              dataset: str | None = typer.Option(None, help="default: the config's data.name, else collm-ml-1m"),
              config: Path | None = typer.Option(None, help="YAML config"),
              nproc: int | None = typer.Option(None, min=1, help="train an LM model in N processes: re-runs this command "
                                                          "under torchrun (data-parallel, gloo on CPU, NCCL on GPU)")):
    """Train one CTR model; select on validation AUC; report test AUC / UAUC on all, warm and cold rows."""
    if nproc is not None:
        argv = sys.argv[1:]
        start = argv.index("ctr") + 1 if "ctr" in argv else 0  # the arguments after `ctr`: `train ...`
        raise typer.Exit(launch(nproc, ["ctr", "train", *without_nproc(argv[start:])]))
    dataset = dataset_option(dataset, config, ctx.args)
    try:
        res = run_ctr(model=named(model, "--model"), dataset=dataset, config=config, overrides=list(ctx.args),
                      log=log)
    except TrainingIncomplete as exc:  # a time cap, not a failure: the same command continues
        if is_main():
            console.print(f"[bold yellow]not finished:[/bold yellow] {safe_text(exc)}")
        raise typer.Exit(code=3) from None
    if not is_main():  # under torchrun rank 0 alone prints
        return
    console.print(ctr_rich_table({res.config.model: res.test}, f"{res.split.name} test"))
    console.print(safe_text(f"run saved to {res.run_dir}"))


@ctr_app.command("evaluate", context_settings=EXTRA)
@handled
def ctr_evaluate(ctx: typer.Context, run_dir: Path = typer.Argument(..., help="a folder written by `semcollab ctr "
                                                                     "train`"),
                 stage: str = typer.Option("test", help="valid or test"),
                 allow_data_change: bool = typer.Option(False, help="evaluate even if the data changed"),
                 max_rows: int | None = typer.Option(None, help="score the fixed random subset that "
                                                     "data.max_<stage>_rows=N selects (compare with LM runs)"),
                 subsample_seed: int = typer.Option(0, **SEED, help="data.subsample_seed of that subset"),
                 nproc: int | None = typer.Option(None, min=1, help="score in N processes: re-runs this command under "
                                                  "torchrun (each rank scores its share of an LM model's batches)")):
    """Re-evaluate a saved CTR run (optionally on the same row subset as a CPU-budget LM run).

    Data pickles that are not the known CoLLM split are read only with --data.allow_pickle=true given here."""
    if nproc is not None:
        argv = sys.argv[1:]
        start = argv.index("ctr") + 1 if "ctr" in argv else 0  # the arguments after `ctr`: `evaluate ...`
        raise typer.Exit(launch(nproc, ["ctr", "evaluate", *without_nproc(argv[start:])]))
    run_dir, args = required_run_arg(run_dir, ctx.args)
    allow_pickle = allow_pickle_arg(args, "ctr evaluate")
    check_stage(stage)
    if max_rows is not None and max_rows < 1:
        raise typer.BadParameter(f"--max-rows must be at least 1, got {max_rows}")
    res = evaluate_ctr_run(run_dir, stage, allow_data_change, max_rows, subsample_seed, allow_pickle=allow_pickle)
    if not is_main():  # under torchrun rank 0 alone prints
        return
    console.print(ctr_rich_table({run_dir.name: res}, f"{stage}"))
    console.print_json(json.dumps(res))


@ctr_app.command("attention", context_settings=EXTRA)
@handled
def ctr_attention(ctx: typer.Context, run_dir: Path = typer.Argument(..., help="a collm / sellarec / sailrec run "
                                                                      "folder"),
                  out: Path | None = typer.Option(None, help="folder for attention.json / .png (default: the run)"),
                  stage: str = typer.Option("test", help="valid or test"),
                  rows: int = typer.Option(256, help="random rows of the stage to record"),
                  seed: int = typer.Option(0, **SEED, help="which random rows"),
                  batch_size: int = typer.Option(8),
                  allow_data_change: bool = typer.Option(False, help="run even if the data changed")):
    """Per-layer attention mass on the collaborative soft tokens (answer position and text positions,
    warm vs cold rows): writes attention.json and attention.png. Data pickles other than the known CoLLM split:
    --data.allow_pickle=true (given here; a run's recorded opt-in is not honoured)."""
    check_stage(stage)
    if rows < 1 or batch_size < 1:
        raise typer.BadParameter(f"--rows and --batch-size must be at least 1, got {rows} and {batch_size}")
    run_dir, args = required_run_arg(run_dir, ctx.args)
    rep = attention_diagnostic(run_dir, out, stage, rows, seed, batch_size, allow_data_change,
                               allow_pickle=allow_pickle_arg(args, "ctr attention"))
    t = Table(title=safe_text(f"{rep['model']}: attention mass on collaborative tokens, answer position "
                              f"({rep['rows']} rows)"))
    t.add_column("layer")
    for k in rep["kinds"]:
        t.add_column(f"{k} (uniform {rep['groups']['all']['uniform'][k]:.3f})")
    for layer in range(rep["layers"]):
        t.add_row(str(layer), *(f"{rep['groups']['all']['answer'][k][layer]:.4f}" for k in rep["kinds"]))
    console.print(t)
    console.print(safe_text(f"written to {(out or run_dir) / 'attention.json'} and attention.png"))


def _ctr_label(run_dir: Path) -> str:
    """Row name of a CTR run: its model and the model_params that set it apart (not the LM or CPU budget)."""
    try:
        return ctr_label(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return run_dir.name


@ctr_app.command("table")
@handled
def ctr_table(run_dirs: list[Path] = typer.Argument(..., help="CTR run folders"), stage: str = typer.Option("test"),
              out: Path | None = typer.Option(None, help="write Markdown here")):
    """One table (all / warm / cold AUC and UAUC) from saved CTR runs."""
    results, md = {}, ["| run | AUC | UAUC | warm AUC | warm UAUC | cold AUC | cold UAUC | log-loss | train rows |",
                       "|---|---|---|---|---|---|---|---|---|"]
    for d in run_dirs:
        try:
            m = json.loads((d / "metrics.json").read_text(encoding="utf-8"))[stage]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise RunFileError(f"{d / 'metrics.json'} is missing or has no {stage!r} metrics ({exc})") from None
        meta = read_run_record(d)
        if not (isinstance(m, dict) and all(isinstance(m.get(g), dict) for g in ("all", "warm", "cold"))):
            task = meta.get("task") or "ranking"
            what = ("a ranking run (semcollab train: full-ranking metrics); tabulate it with `semcollab table`"
                    if task != "ctr" else "a CTR run without all / warm / cold metrics; the folder is damaged")
            raise RunFileError(f"{d} is not a CTR run with AUC metrics: it is {what}")
        name = _ctr_label(d)
        name = name if name not in results else f"{name} ({d.name})"
        results[name] = m

        def f(v):
            return "-" if v is None else f"{v:.4f}"

        rows = meta.get("data_stats", {}).get("train", {}).get("rows", "?")
        md.append(f"| {name} | {f(m['all'].get('auc'))} | {f(m['all'].get('uauc'))} | {f(m['warm'].get('auc'))} | "
                  f"{f(m['warm'].get('uauc'))} | {f(m['cold'].get('auc'))} | {f(m['cold'].get('uauc'))} | "
                  f"{f(m['all'].get('logloss'))} | {rows} |")
    console.print(ctr_rich_table(results, stage))
    if out:
        out.write_text("\n".join(md) + "\n")
        console.print(safe_text(f"table written to {out}"))
