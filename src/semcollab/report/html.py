"""``semcollab report``: one self-contained HTML page of saved runs (tables, curves, breakdowns, diagnostics).

Everything is inline: CSS in a <style> block, plots as base64 PNGs (matplotlib, Agg), no script and no link
to anything outside the file, so the page opens offline and can be mailed or archived as one file. Every
string that comes from a run or data folder (titles, folder names, labels) is HTML-escaped."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np

from ..errors import ReportError  # noqa: F401  (defined in errors.py)
from .plots import bar_chart, curves_chart
from .table import DEFAULT_COLUMNS, ctr_label, run_label

# settings that do not change what a run measures: left out when runs are grouped over seeds
_NOT_SETTINGS = {("train", "seed"), ("train", "progress"), ("train", "device"), ("train", "max_minutes"),
                 ("train", "checkpoint_minutes"), ("data", "path"), ("data", "meta_path"), ("data", "cache_dir"),
                 ("data", "cache"), ("data", "allow_pickle"), ("output_dir",), ("save_model",)}
CTR_COLUMNS = (("all", "auc", "AUC"), ("all", "uauc", "UAUC"), ("warm", "auc", "warm AUC"), ("cold", "auc", "cold AUC"),
               ("all", "logloss", "log-loss"))
MAX_INTENTS = 30  # rows of an intent library shown (densest first); the page says how many there are



@dataclass
class Run:
    path: Path
    kind: str  # "ranking" or "ctr"
    config: dict
    metrics: dict  # metrics.json["test"]
    record: dict  # run.json
    dataset: str = ""
    settings: str = ""  # JSON of the settings other than the seed: runs with equal ones are seeds of one group
    fingerprint: str | None = None  # run.json's data_fingerprint
    intents: list | None = None
    intents_path: Path | None = None

    @property
    def seed(self):
        return (self.config.get("train") or {}).get("seed")

    @property
    def history(self) -> list[dict]:
        return ((self.record.get("fit") or {}).get("history")) or []


@dataclass
class Group:
    label: str
    runs: list[Run] = field(default_factory=list)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not valid JSON ({exc}); the run folder is damaged") from None


def load_run(path: str | Path, stage: str = "test") -> Run:
    """One finished ranking or CTR run folder (config.yaml + metrics.json; run.json when present)."""
    import yaml

    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path} is not a folder; give run folders written by `semcollab train` or `ctr train`")
    for name in ("metrics.json", "config.yaml"):
        if not (path / name).is_file():
            raise ReportError(f"{path} is not a finished run folder: {name} is missing")
    try:
        cfg = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path / 'config.yaml'} is not valid YAML ({exc}); the run folder is damaged") from None
    metrics = _read_json(path / "metrics.json")
    record = _read_json(path / "run.json") if (path / "run.json").is_file() else {}
    if not isinstance(cfg, dict) or "model" not in cfg or not isinstance(record, dict):
        raise ReportError(f"{path / 'config.yaml'} does not describe a run (no 'model')")
    m = metrics.get(stage) if isinstance(metrics, dict) else None
    if not isinstance(m, dict) or not ("overall" in m or "all" in m):
        raise ReportError(f"{path / 'metrics.json'} has no '{stage}' metrics")
    kind = "ctr" if record.get("task") == "ctr" or "all" in m else "ranking"
    run = Run(path, kind, cfg, m, record, dataset=str((cfg.get("data") or {}).get("name", "?")),
              fingerprint=record.get("data_fingerprint"))
    settings = {k: ({kk: vv for kk, vv in v.items() if (k, kk) not in _NOT_SETTINGS} if isinstance(v, dict) else v)
                for k, v in cfg.items() if (k,) not in _NOT_SETTINGS}
    run.settings = json.dumps([kind, settings], sort_keys=True, default=str)
    _attach_intents(run)
    return run


def _attach_intents(run: Run) -> None:
    """A SAERec run's intent library: ``intents.json`` in the run folder, else its model_params.intents_file."""
    candidates = [run.path / "intents.json"]
    f = (run.config.get("model_params") or {}).get("intents_file")
    if f:
        candidates.append(Path(f))
    for c in candidates:
        if c.is_file():
            recs = _read_json(c)
            if not isinstance(recs, list) or not all(isinstance(r, dict) and "latent" in r for r in recs):
                raise ReportError(f"{c} is not an intents.json written by `semcollab intents`")
            run.intents, run.intents_path = recs, c
            return


def _label(run: Run) -> str:
    return (run_label if run.kind == "ranking" else ctr_label)(run.config)


def _datasets(runs: list[Run]) -> None:
    """Runs of one dataset name trained on different data (fingerprints differ) are different datasets."""
    fps: dict[str, set] = {}
    for r in runs:
        fps.setdefault(r.dataset, set()).add(r.fingerprint)
    for r in runs:
        if len(fps[r.dataset] - {None}) > 1 and r.fingerprint:
            r.dataset = f"{r.dataset} (data {r.fingerprint[:8]})"


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs with the same model, dataset and settings (all but the seed) form one group; sorted by dataset.

    A seed that appears twice in a group would be counted twice in its mean +- sd: refused, naming both."""
    by_key: dict[tuple, Group] = {}
    for r in runs:
        g = by_key.setdefault((r.dataset, r.settings), Group(_label(r)))
        twin = next((o for o in g.runs if o.seed == r.seed), None)
        if twin is not None:
            raise ReportError(f"runs {twin.path} and {r.path} have the same settings and seed {r.seed}: one seed "
                              "would count twice in the mean +- sd; leave one out")
        g.runs.append(r)
    groups = sorted(by_key.values(), key=lambda g: (g.runs[0].dataset, g.runs[0].kind, g.label))
    # groups that share a label differ in some other setting: name the settings that differ
    for ds_label in {(g.runs[0].dataset, g.label) for g in groups}:
        same = [g for g in groups if (g.runs[0].dataset, g.label) == ds_label]
        if len(same) > 1:
            flat = [_flat(json.loads(g.runs[0].settings)[1]) for g in same]
            keys = sorted({k for f in flat for k in f if len({json.dumps(x.get(k), default=str) for x in flat}) > 1})
            for g, f in zip(same, flat):
                tags = ", ".join(f"{k}={f.get(k)}" for k in keys)
                g.label += f" [{tags}]" if tags else f" ({g.runs[0].path.name})"
    return groups


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _cell(vals: list[float]) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    a = np.asarray(vals, dtype=np.float64)
    return f"{a.mean():.4f} ± {a.std(ddof=1):.4f}" if len(a) > 1 else f"{a[0]:.4f}"


def _mean_sd(vals: list[float]) -> tuple[float, float]:
    a = np.asarray([v for v in vals if v is not None], dtype=np.float64)
    if not len(a):
        return float("nan"), 0.0
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _seeds(g: Group) -> str:
    """How many seeds, then which: '1 (seed 42)', '3 (seeds 1, 2, 3)'."""
    seeds = [str(r.seed) for r in g.runs]
    return f"{len(seeds)} (seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)})"


def _ranking_table(groups: list[Group]) -> str:
    head = ["dataset", "model", "seeds"] + [c.upper() for c in DEFAULT_COLUMNS] + ["head NDCG@10", "tail NDCG@10",
                                                                                   "epochs (best)"]
    rows = []
    for g in groups:
        ms = [r.metrics for r in g.runs]
        cells = [_cell([m["overall"].get(c) for m in ms]) for c in DEFAULT_COLUMNS]
        cells += [_cell([(m.get(part) or {}).get("ndcg@10") for m in ms]) for part in ("head", "tail")]
        fits = [r.record.get("fit") or {} for r in g.runs]
        ep = ", ".join(f"{f.get('epochs_run', '?')} ({f.get('best_epoch', '?')})" for f in fits)
        rows.append([g.runs[0].dataset, g.label, _seeds(g)] + cells + [ep])
    return _html_table(head, rows, "metrics")


def _ctr_table(groups: list[Group]) -> str:
    head = ["dataset", "model", "seeds"] + [c[2] for c in CTR_COLUMNS] + ["test rows (warm / cold)"]
    rows = []
    for g in groups:
        ms = [r.metrics for r in g.runs]
        cells = [_cell([(m.get(part) or {}).get(key) for m in ms]) for part, key, _ in CTR_COLUMNS]
        m0 = ms[0]
        n = f"{m0['all'].get('n', '?')} ({(m0.get('warm') or {}).get('n', '?')} / {(m0.get('cold') or {}).get('n', '?')})"
        rows.append([g.runs[0].dataset, g.label, _seeds(g)] + cells + [n])
    return _html_table(head, rows, "metrics ctr")


def _html_table(head: list[str], rows: list[list], cls: str) -> str:
    th = "".join(f"<th>{escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<div class=scroll><table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def _figure(title: str, png_b64: str, note: str = "", wide: bool = False) -> str:
    return (f'<figure{" class=wide" if wide else ""}><img alt="{escape(title)}" src="data:image/png;base64,{png_b64}">'
            f"<figcaption>{escape(title)}{(' ' + escape(note)) if note else ''}</figcaption></figure>")


def _breakdown(groups: list[Group], parts: tuple[str, str], metric: str, title: str) -> str | None:
    if not any(all(p in r.metrics for p in parts) for g in groups for r in g.runs):
        return None
    series = {}
    for p in parts:
        series[p] = [_mean_sd([(r.metrics.get(p) or {}).get(metric) for r in g.runs]) for g in groups]
    counts = [f"{p.replace('_', ' ')} {(groups[0].runs[0].metrics.get(p) or {}).get('n_users', '?')}" for p in parts]
    return _figure(title, bar_chart([g.label for g in groups], series, metric.upper()),
                   f"(test users: {', '.join(counts)})")


def _curves(groups: list[Group], dataset: str) -> list[str]:
    out = []
    keys = sorted({k for g in groups for r in g.runs for h in r.history for k in h if k.startswith("valid_")})
    for key, title in [("loss", "training loss per epoch")] + [(k, f"{k.replace('_', ' ')} per epoch") for k in keys]:
        lines = {}
        for g in groups:
            for r in g.runs:
                pts = [(h["epoch"], h[key]) for h in r.history if h.get(key) is not None and "epoch" in h]
                if pts:
                    lines[f"{g.label} seed {r.seed}"] = pts
        if lines:
            out.append(_figure(f"{dataset}: {title}", curves_chart(lines, key)))
    return out


def _diagnose_section(folder: Path) -> str:
    if not (folder / "report.json").is_file():
        raise ReportError(f"{folder} is not a `semcollab diagnose` output folder: report.json is missing")
    rep = _read_json(folder / "report.json")
    try:
        a, b, k = rep["models"]["a"], rep["models"]["b"], rep["k"]
        rows = [[g, v["n_users"], f"{v['jaccard']:.3f}", f"{v['hr_a']:.4f}", f"{v['hr_b']:.4f}", f"{v['only_a']:.4f}",
                 f"{v['only_b']:.4f}", f"{v['oracle_hr']:.4f}", f"{v['fusion_weighted']['hr']:.4f}"]
                for g, v in rep["groups"].items() if v.get("n_users")]
    except (KeyError, TypeError) as exc:
        raise ReportError(f"{folder / 'report.json'} is not a complementarity report (missing {exc})") from None
    table = _html_table(["group", "users", "Jaccard", f"HR@{k} A", f"HR@{k} B", "only A", "only B", "oracle HR",
                         "fused HR"], rows, "metrics")
    png = folder / "report.png"
    fig = ""
    if png.is_file():
        import base64

        fig = _figure(f"complementarity of {a} (A) and {b} (B), top-{k}", base64.b64encode(png.read_bytes()).decode(),
                      wide=True)
    else:
        fig = f"<p class=note>{escape(str(png))} is missing: the plots were not written.</p>"
    return (f"<section><h2>Complementarity: {escape(str(a))} (A) vs {escape(str(b))} (B)</h2>"
            f"<p class=meta>from {escape(str(folder))}</p>{table}<div class=grid>{fig}</div></section>")


def _intents_section(run: Run, label: str) -> str:
    live = sorted(run.intents or [], key=lambda r: -float(r.get("density") or 0))
    shown = live[:MAX_INTENTS]
    rows = [[r.get("latent"), r.get("label", ""), r.get("lm_label", ""), f"{float(r.get('density') or 0):.3f}",
             {True: "yes", False: "no"}.get(r.get("keep"), ""), " | ".join(map(str, (r.get("top_item_texts")
                                                                               or r.get("top_items") or [])[:3]))]
            for r in shown]
    note = (f"the {len(shown)} densest of {len(live)} live intents" if len(live) > len(shown)
            else f"all {len(live)} live intents")
    return (f"<section><h3>Intent library: {escape(label)}</h3><p class=meta>{escape(note)}, from "
            f"{escape(str(run.intents_path))}</p>"
            + _html_table(["latent", "label (TF-IDF)", "LM label", "density", "kept", "top items"], rows, "intents")
            + "</section>")


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1f3a5f;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;opacity:.9}main{padding:8px 32px 40px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:14px 20px;margin:18px 0}
h2{font-size:18px;margin:4px 0 10px;color:#1f3a5f}h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:6px 0;width:100%}
th,td{padding:4px 6px;border-bottom:1px solid #e3e6eb;text-align:right;white-space:nowrap}
.scroll{overflow-x:auto}table.metrics{font-size:12.5px}td:nth-child(2){white-space:normal;min-width:140px}
th{background:#eef1f5;font-weight:600;white-space:normal;vertical-align:bottom}td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}
table.intents td{white-space:normal;text-align:left}tbody tr:hover{background:#f8fafc}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(430px,1fr));gap:14px;margin-top:10px}
figure.wide{grid-column:1/-1}figure{margin:0;border:1px solid #e3e6eb;border-radius:6px;padding:6px;background:#fff}
figure img{width:100%;height:auto;display:block}figcaption{font-size:12px;color:#555;padding:4px 2px 0}
.meta,.note{color:#5a6272;font-size:12px;margin:2px 0 6px}code{font-size:12px}
"""


def render_report(runs: list[Run], diagnose: Path | None = None, allow_mixed_datasets: bool = False) -> str:
    """The HTML page (a string) for loaded runs."""
    if not runs:
        raise ReportError("no runs given: name at least one run folder")
    _datasets(runs)
    names = sorted({r.dataset for r in runs})
    if len(names) > 1 and not allow_mixed_datasets:
        raise ReportError(f"the runs are on {len(names)} datasets ({', '.join(names)}): metrics on different data "
                          "are not one comparison. Report each dataset on its own, or pass --allow-mixed-datasets "
                          "for one section per dataset")
    groups = group_runs(runs)
    sections = []
    for ds in names:
        gs = [g for g in groups if g.runs[0].dataset == ds]
        parts = [f"<section><h2>Dataset: {escape(ds)}</h2>"]
        rank = [g for g in gs if g.runs[0].kind == "ranking"]
        ctr = [g for g in gs if g.runs[0].kind == "ctr"]
        if rank:
            proto = rank[0].runs[0].metrics.get("protocol", "")
            parts.append(f"<p class=meta>test metrics ({escape(str(proto))} ranking), mean ± sd over seeds "
                         "(sample sd); one value where a setting has one seed</p>" + _ranking_table(rank))
        if ctr:
            parts.append("<p class=meta>test click-through metrics, mean ± sd over seeds</p>" + _ctr_table(ctr))
        figs = _curves(gs, ds)
        if rank:
            figs += [f for f in (
                _breakdown(rank, ("head", "tail"), "ndcg@10", f"{ds}: NDCG@10 on head vs tail items"),
                _breakdown(rank, ("short_users", "long_users"), "ndcg@10", f"{ds}: NDCG@10 for short vs long users"))
                if f]
        if ctr:
            series = {f"{p} {k.upper()}": [_mean_sd([(r.metrics.get(p) or {}).get(k) for r in g.runs]) for g in ctr]
                      for p in ("all", "warm", "cold") for k in ("auc", "uauc")}
            figs.append(_figure(f"{ds}: AUC / UAUC on all, warm and cold rows", bar_chart([g.label for g in ctr],
                                                                                          series, "AUC")))
        parts.append(f"<div class=grid>{''.join(figs)}</div>")
        for g in gs:
            for r in g.runs:
                if r.intents is not None:
                    parts.append(_intents_section(r, f"{g.label} seed {r.seed} ({r.path.name})"))
        sections.append("".join(parts) + "</section>")
    if diagnose is not None:
        sections.append(_diagnose_section(Path(diagnose)))
    folders = ", ".join(r.path.name for r in runs)
    created = sorted(str(r.record.get("created", "")).replace("T", " ") for r in runs if r.record.get("created"))
    when = f"trained {created[0]} to {created[-1]}" if created else "training dates not recorded"
    header = (f"<header><h1>semcollab report: {len(runs)} run{'s' * (len(runs) != 1)}, {len(groups)} setting"
              f"{'s' * (len(groups) != 1)}</h1><p>dataset{'s' * (len(names) != 1)}: {escape(', '.join(names))}"
              f" · {escape(when)} · report written {escape(time.strftime('%Y-%m-%d %H:%M'))}</p>"
              f"<p class=runs>runs: {escape(folders)}</p></header>")
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><meta name=viewport "
            f"content=\"width=device-width,initial-scale=1\"><title>semcollab report: {escape(', '.join(names))}"
            f"</title><style>{CSS}</style></head><body>{header}<main>{''.join(sections)}</main></body></html>\n")


def write_report(runs, out, diagnose=None, allow_mixed_datasets: bool = False) -> Path:
    """Write the report of run folders ``runs`` to ``out`` (one HTML file) and return its path.

    The file is written to a temporary sibling and renamed: a failure leaves nothing half-written."""
    from ..runs.files import write_file_atomic

    loaded = [r if isinstance(r, Run) else load_run(r) for r in runs]
    page = render_report(loaded, Path(diagnose) if diagnose else None, allow_mixed_datasets)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(out, page.encode("utf-8"))
    return out
