"""ReaEmb: ``reaemb train``, ``reaemb table``, ``reaemb bench-kv``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ..config import dataset_name
from ..distributed import is_main, launch, without_nproc
from ..methods.reaemb import (
    ReaEmbIncomplete,
    kv_reuse_benchmark,
    load_pipeline_config,
    reaemb_table,
    train_reaemb,
)
from ..textsafe import safe_text
from .common import EXTRA, console, dataset_option, handled, log, named, run_arg

reaemb_app = typer.Typer(no_args_is_help=True, help="ReaEmb: LM item embeddings that 'think' one latent token "
                         "(train the two stages, write item tables, benchmark the KV-cache second pass).")


@reaemb_app.command("train", context_settings=EXTRA)
@handled
def reaemb_train(ctx: typer.Context, dataset: str | None = typer.Option(None, help="e.g. s3rec:Beauty"),
                 lm: str | None = typer.Option(None, help="causal LM: a registry name (smollm2-135m), a folder or a "
                                               "hub id"),
                 config: Path | None = typer.Option(None, help="YAML config (semcollab.methods.reaemb.ReaEmbPipelineConfig)"),
                 out: Path | None = typer.Option(None, help="the run folder (output_dir); default "
                                                 "runs/reaemb/<dataset>-<lm>"),
                 stages: str = typer.Option("stage1,stage2", help="stage1, stage2 or both"),
                 nproc: int | None = typer.Option(None, min=1, help="train in N processes: re-runs this command under "
                                                  "torchrun (data-parallel, gloo on CPU, NCCL on GPU)")):
    """Stage 1 (LRCL: LoRA + thought module) then stage 2 (CRRL: thought module, co-occurrence rewards from
    training sequences). Resumable: a stage stopped by stage<N>.max_minutes exits with code 3 and the same
    command continues it. Settings: --stage1.max_steps=200 --stage1.batch_size=16 --stage2.max_anchors=2000 ..."""
    if nproc is not None:
        argv = sys.argv[1:]
        start = argv.index("reaemb") + 1 if "reaemb" in argv else 0  # the arguments after `reaemb`: `train ...`
        raise typer.Exit(launch(nproc, ["reaemb", "train", *without_nproc(argv[start:])]))
    dataset = _reaemb_dataset(dataset, config, ctx.args)
    cfg = load_pipeline_config(config, ctx.args, dataset=dataset, lm=named(lm, "--lm"), output_dir=out)
    try:
        res = train_reaemb(cfg, stages, log=log)
    except ReaEmbIncomplete as exc:  # a time cap, not a failure: the same command continues
        if is_main():
            console.print(f"[bold yellow]not finished:[/bold yellow] {safe_text(exc)}")
        raise typer.Exit(code=3) from None
    if not is_main():  # under torchrun rank 0 alone prints
        return
    for name, st in res.stages.items():
        t = res.timing.get(name, {})
        console.print(safe_text(f"{name}: {st['steps']} steps, {t.get('seconds', 0):.0f} s over "
                                f"{len(t.get('calls', []))} call(s), peak RSS {t.get('peak_rss_mb', 0):.0f} MiB; "
                                f"saved to {res.run_dir / name / 'final'}"))
    console.print(safe_text(f"next: semcollab reaemb table {res.run_dir} --stage stage2 --out PATH, then semcollab "
                            f"train --model sasrec --dataset {cfg.dataset} --model_params.item_table=PATH"))


@reaemb_app.command("table", context_settings=EXTRA)
@handled
def reaemb_table_cmd(ctx: typer.Context,
                     run_dir: Path | None = typer.Argument(None, help="a run folder of `semcollab reaemb train` "
                                                           "(omit with --plain)"),
                     plain: bool = typer.Option(False, help="the base LM mean-pooled, no LoRA, no thought (the "
                                                "LLMEmb-style baseline); same as --stage plain"),
                     stage: str = typer.Option("stage2", help="plain, stage1 or stage2"),
                     mode: str = typer.Option("kv_reuse", help="kv_reuse or two_pass (trained stages)"),
                     dataset: str | None = typer.Option(None, help="the dataset (a plain table without a run)"),
                     lm: str | None = typer.Option(None, help="the LM of a plain table without a run"),
                     config: Path | None = typer.Option(None, help="YAML config of a plain table without a run"),
                     batch_size: int | None = typer.Option(None, min=1, help="items per batch (default "
                                                           "table_batch_size)"),
                     out: Path | None = typer.Option(None, help="copy the table here (.npy; its meta .json beside)"),
                     nproc: int | None = typer.Option(None, min=1, help="encode in N processes: re-runs this command under "
                                                      "torchrun (each rank encodes its share of the LM batches)")):
    """The item table of a dataset's whole catalogue (n_items + 1 rows, row 0 = padding = zeros), cached by
    texts + LM + trained state + mode; its path goes to --model_params.item_table of sasrec/gru4rec/bert4rec."""
    if nproc is not None:
        raise typer.Exit(launch(nproc, ["reaemb", "table", *without_nproc(sys.argv[2:])]))
    stage = "plain" if plain else stage
    run_dir, args = run_arg(run_dir, ctx.args)
    if run_dir is not None and (lm is not None or config is not None):
        raise typer.BadParameter("--lm and --config are for a plain table without a run; a run folder has its own")
    dataset = _reaemb_dataset(dataset, config, args)
    overrides = args + ([f"lm={named(lm, '--lm')}"] if lm is not None else [])
    path, meta = reaemb_table(run_dir, dataset, stage, mode, config=config, overrides=overrides,
                              batch_size=batch_size, out=out, progress=True, log=log)
    if not is_main():  # under torchrun rank 0 alone prints
        return
    console.print_json(json.dumps(meta))
    console.print(safe_text(f"{stage} table {tuple(meta['shape'])} at {path}; use it with: semcollab train --model "
                            f"sasrec --dataset {meta['config_dataset']} --model_params.item_table={path}"))


@reaemb_app.command("bench-kv", context_settings=EXTRA)
@handled
def reaemb_bench_kv(ctx: typer.Context,
                    run_dir: Path | None = typer.Argument(None, help="a run folder (default stage: stage2); omit "
                                                          "for the base LM with a fresh thought module"),
                    stage: str | None = typer.Option(None, help="plain, stage1 or stage2 (the encoder's weights)"),
                    dataset: str | None = typer.Option(None), lm: str | None = typer.Option(None),
                    config: Path | None = typer.Option(None),
                    n_items: int = typer.Option(256, min=1, help="item texts timed (a fixed random subset)"),
                    batch_size: int | None = typer.Option(None, min=1), repeats: int = typer.Option(1, min=1),
                    json_out: Path | None = typer.Option(None, help="write the report as JSON")):
    """Seconds of (a) one plain pass, (b) the naive full second pass, (c) the KV-cache second pass on the same
    texts; prints (c)/(a) and (b)/(a) and checks that (c) equals (b) (exit code 1 if not)."""
    run_dir, args = run_arg(run_dir, ctx.args)
    if run_dir is not None and (lm is not None or config is not None):
        raise typer.BadParameter("--lm and --config are for a benchmark without a run; a run folder has its own")
    dataset = _reaemb_dataset(dataset, config, args)
    lm_ov = [f"lm={named(lm, '--lm')}"] if lm is not None else []
    rep = kv_reuse_benchmark(run_dir, dataset, stage, config=config, overrides=args + lm_ov,
                             n_items=n_items, batch_size=batch_size, repeats=repeats, log=log)
    console.print_json(json.dumps(rep))
    if json_out:
        json_out.write_text(json.dumps(rep, indent=2) + "\n")
    console.print(f"kv_reuse / plain = {rep['ratio_kv_reuse_to_plain']:.2f}, two_pass / plain = "
                  f"{rep['ratio_two_pass_to_plain']:.2f}; kv_reuse vs two_pass max relative difference "
                  f"{rep['max_rel_diff']:.2e} (tolerance {rep['tol']:.0e})")
    if not rep["equal"]:
        console.print("[bold red]error:[/bold red] kv_reuse does not reproduce two_pass")
        raise typer.Exit(code=1)



def _reaemb_dataset(dataset: str | None, config: Path | None, args: list[str]) -> str | None:
    """ReaEmb names its data with the top-level ``dataset`` key (``data.name`` follows it): ``--dataset``, a
    config's ``dataset`` and its ``data.name`` must agree where given."""
    name = dataset_option(dataset, config, args)
    return dataset_name(name, config, args, key="dataset", flag="--dataset" if dataset is not None else "data.name")
