"""Plain-text and Markdown tables of evaluation results."""

from __future__ import annotations

DEFAULT_COLUMNS = ("hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20")


# model_params that change what a model *is*; shown in table rows so two variants stay apart
LABEL_PARAMS = ("mode", "use_personal", "use_public", "intent_source", "retrieval", "public", "fusion", "encoder")


def run_label(cfg: dict) -> str:
    """Row name for a saved run's config: the model plus the params in ``LABEL_PARAMS`` it sets."""
    params = cfg.get("model_params") or {}
    tags = [f"{k}={params[k]}" for k in LABEL_PARAMS if k in params]
    return cfg["model"] + (f" [{', '.join(tags)}]" if tags else "")


def rows_for(name: str, res: dict, columns=DEFAULT_COLUMNS) -> list[str]:
    row = [name] + [f"{res['overall'].get(c, float('nan')):.4f}" for c in columns]
    for g in ("head", "tail"):
        if g in res and "ndcg@10" in res[g]:
            row.append(f"{res[g]['ndcg@10']:.4f}")
        else:
            row.append("-")
    return row


def header(columns=DEFAULT_COLUMNS) -> list[str]:
    return ["model"] + [c.upper().replace("HR", "HR").replace("NDCG", "NDCG") for c in columns] + ["head NDCG@10", "tail NDCG@10"]


def markdown_table(results: dict[str, dict], columns=DEFAULT_COLUMNS) -> str:
    lines = ["| " + " | ".join(header(columns)) + " |", "|" + "---|" * (len(columns) + 3)]
    for name, res in results.items():
        lines.append("| " + " | ".join(rows_for(name, res, columns)) + " |")
    return "\n".join(lines)


def rich_table(results: dict[str, dict], title: str = "", columns=DEFAULT_COLUMNS):
    from rich.table import Table

    t = Table(title=title)
    for h in header(columns):
        t.add_column(h, justify="right" if h != "model" else "left")
    for name, res in results.items():
        t.add_row(*rows_for(name, res, columns))
    return t
