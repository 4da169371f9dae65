"""The ReaEmb downstream table: per dataset, SASRec / GRU4Rec / BERT4Rec with ID embeddings, the plain LM
table, ReaEmb after stage 1 and after stages 1+2; full ranking and the paper's protocol (100 uniform random
negatives, "sampled-uniform-100"; and 100 negatives drawn by training popularity, "popularity-100", which
asks whether a protocol's verdict comes from easy, rarely-bought negatives); overall and tail (test target among the 80% least popular training items;
the cut in interactions is printed). Epochs: run (best); * = stopped by the epoch cap or the time cap
(train.epochs / max_minutes), not by early stopping. Mean ± std over seeds where there are several; Welch t-tests for the
claims (stage2 vs stage1, stage1 vs plain, each table vs id) where both sides have >= 2 runs.

Usage: python scripts/reaemb_downstream_table.py [OUT_DIR] > docs/tables/reaemb_downstream.md
OUT_DIR (default runs/reaemb-s3rec) holds <dataset>/<model>/<embedding>/seed<N>/<run>/ as written by
scripts/reaemb_s3rec.sh; a run counts once it has metrics.json (its sampled column stays empty until
sampled-uniform-100.json is there; the popularity column likewise, from
`python scripts/evaluate_sampled.py RUN_DIR --negatives popularity`)."""

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/reaemb-s3rec")
MODELS = ("sasrec", "gru4rec", "bert4rec")
EMBS = ("id", "plain", "stage1", "stage2")
EMB_NAME = {"id": "ID", "plain": "plain LM (LLMEmb-style)", "stage1": "ReaEmb stage 1", "stage2": "ReaEmb stages 1+2"}


def runs(ds, model, emb):
    """{seed: {"full": test metrics, "sampled" / "popularity": re-evaluation or None, "epochs": "run (best)"}};
    refuses two finished runs of one seed."""
    def optional(f):
        return json.loads(f.read_text()) if f.exists() else None

    out = {}
    for seed_dir in sorted((OUT / ds / model / emb).glob("seed*")):
        done = [r for r in sorted(seed_dir.iterdir()) if (r / "metrics.json").exists()]
        if len(done) > 1:
            raise SystemExit(f"{seed_dir} holds {len(done)} finished runs; keep one")
        if done:
            r = done[0]
            fit = json.loads((r / "run.json").read_text())["fit"]
            out[seed_dir.name] = {
                "full": json.loads((r / "metrics.json").read_text())["test"],
                "sampled": optional(r / "sampled-uniform-100.json"),
                "popularity": optional(r / "sampled-popularity-100.json"),
                "epochs": f"{fit['epochs_run']} ({fit['best_epoch']})"
                          + ("*" if fit.get("stopped_by") in ("epochs", "max_minutes") else "")}
    return out


def cell(vals):
    if not vals:
        return "–"
    v = np.asarray(vals)
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v[0]:.4f}"


def pick(rs, which, group, metric):
    return [m[which][group][metric] for m in rs.values() if m[which] is not None]


datasets = sorted(d.name for d in OUT.iterdir() if d.is_dir() and any((d / m).is_dir() for m in MODELS))
tests = []
for ds in datasets:
    cut = None
    for f in sorted((OUT / ds).glob("*/*/seed*/*/metrics.json")) + sorted((OUT / ds).glob("*/*/seed*/*/sampled-*.json")):
        m = json.loads(f.read_text())
        cut = m.get("test", m).get("tail_max_train_interactions", cut)
        if cut is not None:
            break
    print(f"\n### {ds}\n\nTail: test targets among the 80% least popular items in training "
          f"(at most {cut if cut is not None else '?'} training interactions).\n")
    print("| model | item embedding | runs | NDCG@10 full | tail NDCG@10 full | HR@10 sampled-100 | "
          "NDCG@10 sampled-100 | tail NDCG@10 sampled-100 | NDCG@10 popularity-100 | epochs (best) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in MODELS:
        table = {e: runs(ds, model, e) for e in EMBS}
        for e in EMBS:
            rs = table[e]
            if not rs:
                continue
            n_s = sum(m["sampled"] is not None for m in rs.values())
            print(f"| {model} | {EMB_NAME[e]} | {len(rs)}{'' if n_s == len(rs) else f' ({n_s} sampled)'} | "
                  f"{cell(pick(rs, 'full', 'overall', 'ndcg@10'))} | {cell(pick(rs, 'full', 'tail', 'ndcg@10'))} | "
                  f"{cell(pick(rs, 'sampled', 'overall', 'hr@10'))} | "
                  f"{cell(pick(rs, 'sampled', 'overall', 'ndcg@10'))} | {cell(pick(rs, 'sampled', 'tail', 'ndcg@10'))} | "
                  f"{cell(pick(rs, 'popularity', 'overall', 'ndcg@10'))} | "
                  f"{', '.join(m['epochs'] for m in rs.values())} |")
        for a, b in (("stage2", "stage1"), ("stage1", "plain"), ("stage1", "id"), ("stage2", "id"), ("plain", "id"),
                     ("stage2", "plain")):
            for which in ("full", "sampled", "popularity"):
                for group in ("overall", "tail"):
                    x, y = pick(table[a], which, group, "ndcg@10"), pick(table[b], which, group, "ndcg@10")
                    if len(x) >= 2 and len(y) >= 2:
                        t = stats.ttest_ind(x, y, equal_var=False)
                        tests.append((ds, model, f"{a} vs {b}", which, group, np.mean(x) - np.mean(y), t.pvalue))
if tests:
    print("\n### Welch t-tests (NDCG@10, settings with >= 2 seeds)\n")
    print("| dataset | model | pair | protocol | test targets | difference | p |")
    print("|---|---|---|---|---|---|---|")
    for ds, model, pair, which, group, diff, p in tests:
        print(f"| {ds} | {model} | {pair} | {which} | {group} | {diff:+.4f} | {p:.2f} |")
