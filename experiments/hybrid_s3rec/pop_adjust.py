"""How far a popularity correction at scoring time moves a trained ranking run's tail metrics (issue 33's +25% tail
target), and what it costs overall: ``score - beta * log(1 + training count)`` (logit adjustment; beta 0 = the run
as trained; ``eval.pop_correction``, semcollab.models.pop_correction), evaluated on the validation and test splits
with semcollab's evaluator (full ranking, history masked).
Beta is chosen on the validation split only: by overall NDCG@10, and (the tail-leaning choice) as the largest beta
whose validation NDCG@10 stays within ``--tolerance`` of beta 0's.

    python experiments/hybrid_s3rec/pop_adjust.py RUN_DIR [RUN_DIR ...] --betas 0 0.05 0.1 0.2 0.3 --out F.json
    python experiments/hybrid_s3rec/pop_adjust.py --table F.json [F.json ...] [--reference sasrec]

``--table`` reads sweeps (``--out`` files) and prints, per dataset and setting (the run's folder name), the test
metrics mean ± std over seeds as trained (beta 0) and at each run's validation-chosen beta (both rules), with Welch's
p of NDCG@10 against the reference setting as trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/seed_table.py: mean_sd, welch
from seed_table import mean_sd, summary, welch  # noqa: E402

# sweep_io.py sits beside this script: found through the script's own folder, which Python puts first on sys.path
# when the script is run (tests load it with tests.script_loader.load_script(..., neighbours=True))
from sweep_io import GROUPS, evaluate_stages, ndcg_row, sweep_runs  # noqa: E402

from semcollab.tasks.ranking import load_ranking_run

ROW_GROUPS = (*GROUPS[:2], ("head", "head"), GROUPS[2])  # all, tail, head, short: the key order of earlier sweeps


def sweep(run_dir: Path, betas: list[float], log=print) -> dict:
    cfg, net, split = load_ranking_run(run_dir)
    pop = split.item_popularity()
    rows = []
    for beta in betas:
        ev = dataclasses.replace(cfg.eval, pop_correction=beta)  # semcollab.models.pop_correction, as eval uses it
        res = evaluate_stages(net, split, pop, ev)
        row = {"beta": beta, **ndcg_row(res, ROW_GROUPS)}
        row["test_hr@10"] = float(res["test"]["overall"]["hr@10"])
        rows.append(row)
        log(json.dumps(row))
    return {"run": str(run_dir), "dataset": cfg.data.name, "setting": Path(run_dir).parent.name, "model": cfg.model,
            "seed": cfg.train.seed, "rows": rows}


def choose(rows: list[dict], tolerance: float) -> dict:
    base = next(r for r in rows if r["beta"] == 0)
    best = max(rows, key=lambda r: r["valid_all"])
    lean = max((r for r in rows if r["valid_all"] >= (1 - tolerance) * base["valid_all"]), key=lambda r: r["beta"])
    return {"by_valid_ndcg": best["beta"], f"largest_within_{tolerance:g}": lean["beta"]}


RULES = ("as trained", "by_valid_ndcg", "largest_within")


def pick(res: dict, rule: str, tolerance: float) -> dict:
    """The sweep row a rule picks (beta 0 as trained)."""
    if rule == "as trained":
        beta = 0.0
    else:
        chosen = choose(res["rows"], tolerance)
        beta = chosen["by_valid_ndcg"] if rule == "by_valid_ndcg" else chosen[f"largest_within_{tolerance:g}"]
    return next(r for r in res["rows"] if r["beta"] == beta)


def table_rows(results: list[dict], reference: str, tolerance: float):
    """Markdown lines: per dataset, setting and rule, the test metrics over seeds and Welch p against the reference."""
    yield ("| dataset | setting | beta rule | seeds | betas | NDCG@10 | HR@10 | tail NDCG@10 | head NDCG@10 | "
           "short-history NDCG@10 | p vs reference |")
    yield "|---|---|---|---|---|---|---|---|---|---|---|"
    for ds in sorted({r["dataset"] for r in results}):
        here = [r for r in results if r["dataset"] == ds]
        ref = [pick(r, "as trained", tolerance)["test_all"] for r in here if r["setting"] == reference]
        for setting in sorted({r["setting"] for r in here}, key=lambda s: (s != reference, s)):
            runs = sorted((r for r in here if r["setting"] == setting), key=lambda r: r["seed"])
            for rule in RULES:
                picked = [pick(r, rule, tolerance) for r in runs]
                col = {k: [p[k] for p in picked] for k in ("test_all", "test_hr@10", "test_tail", "test_head",
                                                           "test_short")}
                p_ref = ""
                if len(ref) > 1 and len(picked) > 1 and not (setting == reference and rule == "as trained"):
                    p_ref = f"{welch(summary(col['test_all']), summary(ref))[1]:.3g}"
                name = rule if rule != "largest_within" else f"largest within {tolerance:.0%}"
                betas = ", ".join(f"{x['beta']:g}" for x in picked)
                yield (f"| {ds} | {setting} | {name} | {len(runs)} | {betas} | "
                       f"{mean_sd(col['test_all'])} | {mean_sd(col['test_hr@10'])} | {mean_sd(col['test_tail'])} | "
                       f"{mean_sd(col['test_head'])} | {mean_sd(col['test_short'])} | {p_ref} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", type=Path)
    p.add_argument("--table", nargs="+", type=Path, default=None, help="print the table of these sweep files")
    p.add_argument("--reference", default="sasrec", help="--table: the setting Welch p is computed against")
    p.add_argument("--betas", nargs="+", type=float, default=[0.0, 0.05, 0.1, 0.2, 0.3])
    p.add_argument("--tolerance", type=float, default=0.01, help="relative validation NDCG@10 loss allowed")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    if a.table:
        results = [r for f in a.table for r in json.loads(f.read_text())]
        for r in results:  # sweeps written before these fields: OUT/<dataset>/<setting>/<run> as run.sh lays out
            r.setdefault("setting", Path(r["run"]).parent.name)
            r.setdefault("dataset", Path(r["run"]).parent.parent.name)
        print("\n".join(table_rows(results, a.reference, a.tolerance)))
        return 0
    if not a.runs:
        p.error("give run folders to sweep, or --table with sweep files")
    if 0.0 not in a.betas:
        a.betas = [0.0, *a.betas]

    def one(run: Path) -> dict:
        res = sweep(run, sorted(a.betas), log=lambda s: print(s, file=sys.stderr))
        res["chosen"] = choose(res["rows"], a.tolerance)
        print(json.dumps({"run": str(run), "chosen": res["chosen"]}))
        return res

    sweep_runs(a.runs, one, a.out)  # --out rewritten after each run: a stopped sweep keeps what finished
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
