"""Plain-text and Markdown tables of evaluation results."""

from __future__ import annotations

from pathlib import Path

DEFAULT_COLUMNS = ("hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20")


# model_params that change what a model *is*; shown in table rows so two variants stay apart
LABEL_PARAMS = ("mode", "use_personal", "use_public", "intent_source", "retrieval", "public", "fusion", "branch_dropout",
                "encoder")


def run_label(cfg: dict) -> str:
    """Row name for a saved run's config: the model plus the params in ``LABEL_PARAMS`` it sets."""
    params = cfg.get("model_params") or {}
    tags = [f"{k}={params[k]}" for k in LABEL_PARAMS if k in params]
    return cfg["model"] + (f" [{', '.join(tags)}]" if tags else "")


# CTR model_params that do not set a model apart (the LM and the CPU budget): left out of a CTR row's name
CTR_UNLABELLED = ("lm", "soft_max_rows", "max_minutes", "checkpoint_every", "score_batch_size")


def ctr_label(cfg: dict) -> str:
    """Row name for a saved CTR run's config: the model plus the model_params that set it apart."""
    params = {k: v for k, v in (cfg.get("model_params") or {}).items() if k not in CTR_UNLABELLED}
    return str(cfg["model"]) + (f" [{', '.join(f'{k}={v}' for k, v in params.items())}]" if params else "")


def seeded_runs(group: str | Path) -> list[Path]:
    """The finished runs (``metrics.json`` written) in a group folder of seeded runs of one setting, sorted.

    Two finished runs with the same seed would count one seed twice in a mean ± std or a t-test, so they are
    refused, naming both folders (delete or move the one not wanted)."""
    import yaml

    group = Path(group)
    if not group.is_dir():
        raise FileNotFoundError(f"{group}: no such run group folder")
    runs = sorted(p for p in group.iterdir() if (p / "metrics.json").exists())
    seen: dict[object, Path] = {}
    for r in runs:
        seed = (yaml.safe_load((r / "config.yaml").read_text()).get("train") or {}).get("seed")
        if seed in seen:
            raise ValueError(f"{group}: runs {seen[seed].name} and {r.name} both finished with seed {seed}")
        seen[seed] = r
    return runs


def rows_for(name: str, res: dict, columns=DEFAULT_COLUMNS, dataset: str | None = None) -> list[str]:
    row = [name] + ([dataset] if dataset is not None else []) + [f"{res['overall'].get(c, float('nan')):.4f}"
                                                                 for c in columns]
    for g in ("head", "tail"):
        if g in res and "ndcg@10" in res[g]:
            row.append(f"{res[g]['ndcg@10']:.4f}")
        else:
            row.append("-")
    return row


def header(columns=DEFAULT_COLUMNS, with_dataset: bool = False) -> list[str]:
    return ["model"] + (["dataset"] if with_dataset else []) + [c.upper().replace("HR", "HR").replace("NDCG", "NDCG") for c in columns] + ["head NDCG@10", "tail NDCG@10"]


def markdown_table(results: dict[str, dict], columns=DEFAULT_COLUMNS) -> str:
    return markdown_rows([(name, None, res) for name, res in results.items()], columns)


def markdown_rows(rows: list[tuple[str, str | None, dict]], columns=DEFAULT_COLUMNS) -> str:
    """Rows of (name, dataset, results); a dataset column after the model when any row has a dataset."""
    head = header(columns, any(d is not None for _, d, _ in rows))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, ds, res in rows:
        lines.append("| " + " | ".join(rows_for(name, res, columns, ds)) + " |")
    return "\n".join(lines)


def rich_table(results: dict[str, dict], title: str = "", columns=DEFAULT_COLUMNS):
    return rich_rows([(name, None, res) for name, res in results.items()], title, columns)


def rich_rows(rows: list[tuple[str, str | None, dict]], title: str = "", columns=DEFAULT_COLUMNS):
    from rich.table import Table

    from ..textsafe import safe_text

    # run names, dataset names and titles are data (folder names, config values): printed as written
    t = Table(title=safe_text(title))
    for h in header(columns, any(d is not None for _, d, _ in rows)):
        t.add_column(h, justify="right" if h not in ("model", "dataset") else "left")
    for name, ds, res in rows:
        t.add_row(*map(safe_text, rows_for(name, res, columns, ds)))
    return t
