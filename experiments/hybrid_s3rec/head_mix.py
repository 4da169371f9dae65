"""What a trained hybrid's two gates learned, and how much its semantic head's score is worth at test time (issue 33:
where the gain over AlphaFuse stops).

Per run: the item gate's ID share ``1 - g`` (mean over dimensions) averaged over head and tail items, the user gate's
semantic-head share ``w`` at history lengths 1, 5 and ``max_len``; then the semantic head's share scaled at scoring
time, ``w -> scale * w`` (0: the ID head alone; 1: the run as trained), evaluated on the validation and test splits
with semcollab's evaluator (full ranking, history masked; scale 1 is read from the run's metrics.json unless
listed). Nothing is retrained: a share that moves nothing says the
head's effect is in training (its own loss and the tail distillation), not in the score.

    python experiments/hybrid_s3rec/head_mix.py RUN_DIR [RUN_DIR ...] --scales 0 0.5 1.5 --out F.json
    python experiments/hybrid_s3rec/head_mix.py RUN_DIR [RUN_DIR ...] --scales --out F.json   # the gates only
    python experiments/hybrid_s3rec/head_mix.py --table F.json [F.json ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/seed_table.py: mean_sd
from seed_table import mean_sd  # noqa: E402

# sweep_io.py sits beside this script: found through the script's own folder, first on sys.path when it is run
from sweep_io import evaluate_stages, ndcg_row, sweep_runs  # noqa: E402

from semcollab.models.hybrid import Hybrid
from semcollab.tasks.ranking import load_ranking_run

LENGTHS = (1, 5)  # and max_len


@contextmanager
def scaled_head_share(net: Hybrid, scale: float):
    """``net`` scoring with the semantic head's share ``w`` multiplied by ``scale`` (restored on exit)."""
    learned = net.user_weights
    net.user_weights = lambda seqs: learned(seqs) * scale
    try:
        yield net
    finally:
        del net.user_weights  # the instance attribute goes; the class's method shows through again


def gates(net: Hybrid) -> dict:
    """The learned gates: the ID part's share of the item vectors (head / tail items) and the semantic head's share
    of the score at a few history lengths (None without the head)."""
    with torch.no_grad():
        keep = 1 - net.item_gates()[1:].mean(1)  # (n_items,): items 1..n_items
        tail = net.tail[1:]
        out = {"item_id_share_head": float(keep[~tail].mean()), "item_id_share_tail": float(keep[tail].mean())}
        if net.cfg.semantic_head:
            for n in (*LENGTHS, net.max_len):
                seqs = torch.ones(1, n, dtype=torch.long)
                out[f"head_share_len{n}"] = float(net.user_weights(seqs)[0, -1, 0])
    return out


def as_trained(run_dir: Path) -> dict:
    """Scale 1's row, read from the run's own metrics.json (what the sweep would recompute at scale 1)."""
    return {"scale": 1.0, **ndcg_row(json.loads((Path(run_dir) / "metrics.json").read_text()))}


def sweep(run_dir: Path, scales: list[float], log=print) -> dict:
    cfg, net, split = load_ranking_run(run_dir)
    if not isinstance(net, Hybrid):
        raise SystemExit(f"{run_dir}: model {cfg.model!r} is not the hybrid")
    pop = split.item_popularity()
    res = {"run": str(run_dir), "dataset": cfg.data.name, "setting": Path(run_dir).parent.name,
           "seed": cfg.train.seed, "gates": gates(net), "rows": [], "as_trained": as_trained(run_dir)}
    log(json.dumps(res["gates"]))
    for scale in scales if net.cfg.semantic_head else []:
        with scaled_head_share(net, scale):
            row = {"scale": scale, **ndcg_row(evaluate_stages(net, split, pop, cfg.eval))}
        res["rows"].append(row)
        log(json.dumps(row))
    return res


def all_rows(res: dict) -> list[dict]:
    """The sweep's rows plus the run as trained (scale 1) when the sweep did not evaluate it."""
    rows = list(res["rows"])
    if "as_trained" in res and not any(r["scale"] == 1.0 for r in rows) and rows:
        rows.append(res["as_trained"])
    return rows


def table_rows(results: list[dict]):
    """Markdown lines: per dataset and setting, the gates and each scale's NDCG@10 (mean ± sd over seeds)."""
    yield ("| dataset | setting | seeds | ID share, head items | ID share, tail items | head share at length 1 / "
           "5 / max | scale | valid NDCG@10 | test NDCG@10 | test tail | test short-history |")
    yield "|---|---|---|---|---|---|---|---|---|---|---|"
    for ds, setting in sorted({(r["dataset"], r["setting"]) for r in results}):
        runs = [r for r in results if (r["dataset"], r["setting"]) == (ds, setting)]
        g = {k: [r["gates"][k] for r in runs] for k in runs[0]["gates"]}
        shares = " / ".join(mean_sd(v, 3) for k, v in g.items() if k.startswith("head_share_len")) or "no head"
        lead = (f"| {ds} | {setting} | {len(runs)} | {mean_sd(g['item_id_share_head'], 3)} | "
                f"{mean_sd(g['item_id_share_tail'], 3)} | {shares} |")
        for scale in sorted({row["scale"] for r in runs for row in all_rows(r)}) or [None]:
            rows = [row for r in runs for row in all_rows(r) if row["scale"] == scale]
            cells = [mean_sd([row[k] for row in rows]) for k in ("valid_all", "test_all", "test_tail", "test_short")] \
                if rows else [""] * 4
            yield f"{lead} {'' if scale is None else f'{scale:g}'} | " + " | ".join(cells) + " |"
            lead = "| | | | | | |"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", type=Path)
    p.add_argument("--table", nargs="+", type=Path, default=None, help="print the table of these sweep files")
    p.add_argument("--scales", nargs="*", type=float, default=[0.0], help="none: the gates only (no evaluation)")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    if a.table:
        print("\n".join(table_rows([r for f in a.table for r in json.loads(f.read_text())])))
        return 0
    if not a.runs:
        p.error("give hybrid run folders to sweep, or --table with sweep files")
    if any(s < 0 for s in a.scales):
        p.error(f"--scales must be >= 0 (a share of the score), got {a.scales}")

    def one(run: Path) -> dict:
        return sweep(run, sorted(set(a.scales)), log=lambda s: print(s, file=sys.stderr))

    sweep_runs(a.runs, one, a.out)  # --out rewritten after each run: a stopped sweep keeps what finished
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
