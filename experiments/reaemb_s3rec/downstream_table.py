"""The ReaEmb downstream table: per dataset, SASRec / GRU4Rec / BERT4Rec with ID embeddings, the plain LM
table, ReaEmb after stage 1 and after stages 1+2; full ranking and the paper's protocol (100 uniform random
negatives, "sampled-uniform-100"; and 100 negatives drawn by training popularity, "popularity-100", which
asks whether a protocol's verdict comes from easy, rarely-bought negatives); overall and tail (test target among
the 80% least popular training items; the cut in interactions is printed). Epochs: run (best); * = stopped by the
epoch cap or the time cap (train.epochs / max_minutes), not by early stopping. Mean ± std over seeds where there
are several; Welch t-tests for the claims (stage2 vs stage1, stage1 vs plain, each table vs id) where both sides
have >= 2 runs.

Usage: python experiments/reaemb_s3rec/downstream_table.py [OUT_DIR ...] [--earlier TABLE.md] > docs/tables/reaemb_downstream.md
Each OUT_DIR (default runs/reaemb-s3rec; or its committed copy benchmarks/runs/reaemb-s3rec made by
scripts/archive_runs.py) holds <dataset>/<model>/<embedding>/seed<N>/<run>/ as written by experiments/reaemb_s3rec/run.sh;
a run counts once it has metrics.json (its sampled column stays empty until sampled-uniform-100.json is there; the
popularity column likewise, from `python experiments/reaemb_s3rec/evaluate_sampled.py RUN_DIR --negatives popularity`).

--earlier TABLE.md: a table this script printed before, whose run folders are gone. Its one-run cells count as
that run (seed1; values as printed, 4 decimals; the popularity tail it did not print stays out of tests on that
cell), so later seeds add to them; its several-run cells are kept as printed (mean, std, n) when no run of
that setting is found; a Welch test between two such cells is kept as printed (it was made from the runs), and
one against a cell with new runs uses the printed mean and std. Cells that use it are marked †."""

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: the one seed / Welch tool
from seed_table import mean_sd, summary, welch  # noqa: E402

MODELS = ("sasrec", "gru4rec", "bert4rec")
EMBS = ("id", "plain", "stage1", "stage2")
EMB_NAME = {"id": "ID", "plain": "plain LM (LLMEmb-style)", "stage1": "ReaEmb stage 1", "stage2": "ReaEmb stages 1+2"}
# the printed metric columns, in order, as (protocol, test targets, metric)
COLUMNS = (("full", "overall", "ndcg@10"), ("full", "tail", "ndcg@10"), ("sampled", "overall", "hr@10"),
           ("sampled", "overall", "ndcg@10"), ("sampled", "tail", "ndcg@10"), ("popularity", "overall", "ndcg@10"))


def parse_args(argv):
    outs, earlier = [], None
    it = iter(argv)
    for a in it:
        if a == "--earlier":
            earlier = Path(next(it, None) or sys.exit("--earlier needs a file"))
        elif a.startswith("--"):
            sys.exit(f"unknown option {a}\n\n{__doc__}")
        else:
            outs.append(Path(a))
    for o in outs:
        if not o.is_dir():
            sys.exit(f"{o}: no such folder")
    return outs or [Path("runs/reaemb-s3rec")], earlier


def read_earlier(path: Path):
    """{(dataset, model, emb): {"n", "epochs", "cols": {column: (mean, std or None)}}}, {dataset: tail cut},
    {(dataset, model, pair, protocol, targets): (difference, p)} as printed (computed from the lost single runs)."""
    cells, cuts, tests, ds = {}, {}, {}, None
    name_to_emb = {v: k for k, v in EMB_NAME.items()}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("### ") and "Welch" not in line:
            ds = line[4:].strip()
        elif line.startswith("Tail:") and ds:
            m = re.search(r"at most (\d+) training", line)
            cuts[ds] = int(m.group(1)) if m else None
        elif ds and line.startswith("| ") and line.split("|")[1].strip() in MODELS:
            f = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(f) != 10 or f[1] not in name_to_emb or not f[2].isdigit():
                sys.exit(f"{path}:{i}: not a row of this script's table: {line}")
            cols = {}
            for col, text in zip(COLUMNS, f[3:9]):
                if text in ("–", "-"):
                    continue
                m = re.fullmatch(r"([0-9.]+)(?: ± ([0-9.]+))?", text.rstrip("†").strip())
                if not m:
                    sys.exit(f"{path}:{i}: cannot read the cell {text!r}")
                cols[col] = (float(m.group(1)), float(m.group(2)) if m.group(2) else None)
            cells[(ds, f[0], name_to_emb[f[1]])] = {"n": int(f[2]), "epochs": f[9], "cols": cols}
        elif line.startswith("### Welch"):
            ds = None
        elif ds is None and line.startswith("| ") and line.count("|") == 8 and not line.startswith("| dataset"):
            f = [c.strip() for c in line.strip().strip("|").split("|")]
            tests[tuple(f[:5])] = (float(f[5]), float(f[6]))
    return cells, cuts, tests


OUTS, EARLIER_PATH = parse_args(sys.argv[1:])
EARLIER, EARLIER_CUTS, EARLIER_TESTS = read_earlier(EARLIER_PATH) if EARLIER_PATH else ({}, {}, {})


def runs(ds, model, emb):
    """{seed: {"full" / "sampled" / "popularity": metrics or None, "epochs": "run (best)", "earlier": bool}};
    refuses two finished runs of one seed (in one folder or across folders)."""
    def optional(f):
        return json.loads(f.read_text()) if f.exists() else None

    out = {}
    for root in OUTS:
        for seed_dir in sorted((root / ds / model / emb).glob("seed*")):
            done = [r for r in sorted(seed_dir.iterdir()) if (r / "metrics.json").exists()]
            if len(done) > 1:
                sys.exit(f"{seed_dir} holds {len(done)} finished runs; keep one")
            if not done:
                continue
            if seed_dir.name in out:
                sys.exit(f"{ds}/{model}/{emb}/{seed_dir.name} is finished in two of {[str(o) for o in OUTS]}; keep one")
            r = done[0]
            fit = json.loads((r / "run.json").read_text())["fit"]
            out[seed_dir.name] = {
                "full": json.loads((r / "metrics.json").read_text())["test"],
                "sampled": optional(r / "sampled-uniform-100.json"),
                "popularity": optional(r / "sampled-popularity-100.json"),
                "epochs": f"{fit['epochs_run']} ({fit['best_epoch']})"
                          + ("*" if fit.get("stopped_by") in ("epochs", "max_minutes") else ""),
                "earlier": False}
    old = EARLIER.get((ds, model, emb))
    if old and old["n"] == 1:
        if "seed1" in out:
            sys.exit(f"{ds}/{model}/{emb}: seed1 is both a run folder and a one-run cell of {EARLIER_PATH}")
        rec = {"full": None, "sampled": None, "popularity": None, "epochs": old["epochs"] + "†", "earlier": True}
        for (which, group, metric), (v, _) in old["cols"].items():
            rec[which] = rec[which] or {}
            rec[which].setdefault(group, {})[metric] = v
        out = {"seed1": rec, **out}
    elif old and out:
        sys.exit(f"{ds}/{model}/{emb}: {EARLIER_PATH} has a {old['n']}-run cell and there are new runs; its single "
                 "runs cannot be recovered to pool them, so keep one source")
    return dict(sorted(out.items()))


def sample(rs, old, which, group, metric):
    """("values", [..]) from runs, or ("stats", mean, std, n) from an earlier several-run cell, or None. A metric
    some run lacks (the popularity tail of an earlier one-run cell) gives None rather than a partial sample."""
    if rs:
        have = [m for m in rs.values() if m[which] is not None]
        if not have or any(metric not in m[which].get(group, {}) for m in have):
            return None
        return ("values", [m[which][group][metric] for m in have])
    if old and (which, group, metric) in old["cols"]:
        mean, std = old["cols"][(which, group, metric)]
        return ("stats", mean, std, old["n"])
    return None


def cell(s, mark):
    if s is None:
        return "–"
    if s[0] == "stats":
        return f"{s[1]:.4f} ± {s[2]:.4f}†" if s[3] > 1 else f"{s[1]:.4f}†"
    return mean_sd(s[1]) + ("†" if mark else "")


def difference_and_p(a, b):
    """(difference, Welch p) for two samples of >= 2 each, from values or printed statistics."""
    def stats_of(s):
        if s[0] == "values":
            return summary(s[1])
        return s[1], s[2] if s[2] is not None else float("nan"), s[3]
    if a is None or b is None:
        return None
    sa, sb = stats_of(a), stats_of(b)
    if sa[2] < 2 or sb[2] < 2:
        return None
    return sa[0] - sb[0], welch(sa, sb)[1]


def main():
    datasets = sorted({d.name for o in OUTS if o.is_dir() for d in o.iterdir()
                       if d.is_dir() and any((d / m).is_dir() for m in MODELS)} | {k[0] for k in EARLIER})
    tests = []
    for ds in datasets:
        cut = None
        for o in OUTS:
            for f in sorted((o / ds).glob("*/*/seed*/*/metrics.json")) + sorted((o / ds).glob("*/*/seed*/*/sampled-*.json")):
                m = json.loads(f.read_text())
                cut = m.get("test", m).get("tail_max_train_interactions", cut)
                if cut is not None:
                    break
            if cut is not None:
                break
        if EARLIER_CUTS.get(ds) is not None and cut is not None and cut != EARLIER_CUTS[ds]:
            sys.exit(f"{ds}: the runs' tail cut ({cut}) differs from {EARLIER_PATH} ({EARLIER_CUTS[ds]})")
        cut = cut if cut is not None else EARLIER_CUTS.get(ds)
        print(f"\n### {ds}\n\nTail: test targets among the 80% least popular items in training "
              f"(at most {cut if cut is not None else '?'} training interactions).\n")
        print("| model | item embedding | runs | NDCG@10 full | tail NDCG@10 full | HR@10 sampled-100 | "
              "NDCG@10 sampled-100 | tail NDCG@10 sampled-100 | NDCG@10 popularity-100 | epochs (best) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for model in MODELS:
            table = {e: (runs(ds, model, e), EARLIER.get((ds, model, e))) for e in EMBS}
            for e in EMBS:
                rs, old = table[e]
                if rs:
                    n, n_s = len(rs), sum(m["sampled"] is not None for m in rs.values())
                    mark = any(m["earlier"] for m in rs.values())
                    epochs = ", ".join(m["epochs"] for m in rs.values())
                    count = f"{n}{'' if n_s == n else f' ({n_s} sampled)'}"
                elif old:
                    mark, epochs, count = True, old["epochs"], str(old["n"])
                else:
                    continue
                cells = " | ".join(cell(sample(rs, old, *c), mark) for c in COLUMNS)
                print(f"| {model} | {EMB_NAME[e]} | {count} | {cells} | {epochs} |")
            for a, b in (("stage2", "stage1"), ("stage1", "plain"), ("stage1", "id"), ("stage2", "id"), ("plain", "id"),
                         ("stage2", "plain")):
                for which in ("full", "sampled", "popularity"):
                    for group in ("overall", "tail"):
                        key = (ds, model, f"{a} vs {b}", which, group)
                        if not table[a][0] and not table[b][0] and key in EARLIER_TESTS:
                            r = EARLIER_TESTS[key]  # both cells only as printed: keep the test made from their runs
                        else:
                            r = difference_and_p(sample(*table[a], which, group, "ndcg@10"),
                                                 sample(*table[b], which, group, "ndcg@10"))
                        if r is not None:
                            tests.append((ds, model, f"{a} vs {b}", which, group, *r))
    if tests:
        print("\n### Welch t-tests (NDCG@10, settings with >= 2 seeds)\n")
        if EARLIER:
            print(f"† in a cell: some or all of its runs are read from {EARLIER_PATH} (their run folders are gone); "
                  "a test between two several-run † cells is the one printed there (made from the runs); "
                  "one against new runs uses the printed mean and std (4 decimals).\n")
        print("| dataset | model | pair | protocol | test targets | difference | p |")
        print("|---|---|---|---|---|---|---|")
        for ds, model, pair, which, group, diff, p in tests:
            print(f"| {ds} | {model} | {pair} | {which} | {group} | {diff:+.4f} | {p:.2f} |")


if __name__ == "__main__":
    main()
