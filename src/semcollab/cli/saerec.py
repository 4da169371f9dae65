"""SAERec: ``intents`` (the SAE intent library of a dataset) and ``branch-stats`` (how a trained SAERec uses
its intent branches)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from ..methods.saerec.pipeline import build_intents
from ..tasks.ranking_eval import branch_stats_for_run
from ..textsafe import safe_text
from .common import EMPTY_TEXT_HELP, SEED, EmptyText, check_stage, console, handled, log, named


@handled
def intents(ctx: typer.Context, dataset: str | None = typer.Option(None, help="default: data.name, else ml-100k"),
            encoder: str = typer.Option("minilm"),
            template: str | None = typer.Option(None, help="default: the dataset's own template"),
            top: int = typer.Option(20, min=1, help="intents to print"),
            out: Path = typer.Option(Path("intents"), help="folder for intents.json and sae_quality.json"),
            lm_labels: str | None = typer.Option(None, help="also name intents with this causal LM "
                                                   "(smollm2-135m, a folder or a hub id)"),
            lm_top: int = typer.Option(50, min=1, help="how many intents the LM names (most used in training "
                                       "first)"),
            judge: str | None = typer.Option(None, help="ask this causal LM whether each intent is a shopping intent "
                                               "(keep flags for --model_params.intents_file; gemma3-270m or larger)"),
            judge_top: int | None = typer.Option(None, min=1, help="judge only the N most used intents (default: "
                                                 "all live)"),
            empty_text: EmptyText = typer.Option(EmptyText.template, help=EMPTY_TEXT_HELP)):
    """Train (or reuse) the TopK SAE over item text vectors and print the named intent library.

    SAE settings: --sae.k=15 --sae.expansion=16 --sae.kind=topk --sae.tied=false --sae.steps=2000 ..."""
    for value, option in ((encoder, "--encoder"), (template, "--template"), (lm_labels, "--lm-labels"),
                          (judge, "--judge")):
        named(value, option)
    res = build_intents(named(dataset, "--dataset"), encoder=encoder, template=template,
                        empty_text=empty_text.value, overrides=list(ctx.args), lm_labels=lm_labels, lm_top=lm_top,
                        judge=judge, judge_top=judge_top, out=out, log=log,
                        status=lambda message: console.status(safe_text(message)))
    lib, texts = res.library, res.texts
    t = Table(title=safe_text(f"{res.split.name}: {top} densest live intents of {res.n_latents} latents"))
    cols = ("latent", "label", *(("LM label",) if lm_labels else ()), "density", "example item")
    for col in cols:
        t.add_column(col)
    live = [j for j in np.argsort(-lib.density) if lib.density[j] > 0][:top]
    for j in live:
        lm = (safe_text(lib.lm_labels.get(j, "")),) if lm_labels else ()  # labels and texts are data
        t.add_row(str(j), safe_text(lib.labels[j]), *lm, f"{lib.density[j]:.3f}",
                  safe_text(texts[lib.top_items[j][0] - 1], 60))
    console.print(t)
    console.print_json(json.dumps(res.quality))
    console.print(safe_text(f"library written to {res.out_dir}/intents.json"))


@handled
def branch_stats(run_dirs: list[Path] = typer.Argument(..., help="SAERec run folders"),
                 stage: str = typer.Option("test", help="valid or test"),
                 max_users: int = typer.Option(2000, help="random evaluation users (0: all)"),
                 seed: int = typer.Option(0, **SEED), out: Path | None = typer.Option(None, help="write all results as JSON"),
                 allow_data_change: bool = typer.Option(False, help="run even if the data changed")):
    """How SAERec's intent branches are used at the scoring position: fusion weights, norms, score share,
    top-10 changes and HR/NDCG with vs without the intent branches, attention entropy, intent coverage."""
    check_stage(stage)
    if max_users < 0:
        raise typer.BadParameter(f"--max-users must be >= 0, got {max_users}")
    results = [branch_stats_for_run(d, stage, max_users or None, seed=seed, allow_data_change=allow_data_change)
               for d in run_dirs]
    cols = ("weight_personal_mean", "weight_public_mean", "ratio_intent_mean", "share_intent_top10",
            "top10_changed_frac", "hr@10_fused", "hr@10_seq_only", "entropy_personal_norm_mean",
            "coverage_personal", "alive_latents")
    t = Table(title=f"SAERec branch use ({stage})")
    t.add_column("run")
    for c in cols:
        t.add_column(c)
    for d, r in zip(run_dirs, results):
        t.add_row(safe_text(d.name), *("-" if r.get(c) is None else (f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]))
                            for c in cols))
    console.print(t)
    if out:
        out.write_text(json.dumps(results, indent=1))
        console.print(safe_text(f"written to {out}"))
