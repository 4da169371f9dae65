"""`semcollab report`: one self-contained HTML page of runs (tables with mean +- sd, curves, breakdowns)."""

import json
import re
import shutil
import statistics

import pytest

from semcollab.report.html import ReportError, write_report
from tests.report_fixture import app, make_runs, runner


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    out = make_runs(base)
    r = runner.invoke(app, ["diagnose", str(out["gru1"]), str(out["pop"]), "--no-probes", "--out", str(base / "diag")])
    assert r.exit_code == 0, r.output
    out["diag"] = base / "diag"
    return out


def _test_metrics(run):
    return json.loads((run / "metrics.json").read_text())["test"]


def test_metrics_table_has_mean_sd_over_seeds_and_a_dataset_column(runs, tmp_path):
    page = write_report([runs["gru1"], runs["gru2"], runs["pop"]], tmp_path / "r.html").read_text()
    m1, m2 = _test_metrics(runs["gru1"]), _test_metrics(runs["gru2"])
    for part, key in (("overall", "ndcg@10"), ("overall", "hr@10"), ("tail", "ndcg@10")):
        a, b = m1[part][key], m2[part][key]
        # sample sd of two values: |a - b| / sqrt(2)
        assert f"{(a + b) / 2:.4f} ± {statistics.stdev([a, b]):.4f}" in page, (part, key)
    pop = _test_metrics(runs["pop"])["overall"]["ndcg@10"]
    assert f"<td>{pop:.4f}</td>" in page  # one seed: the value alone
    head = re.search(r"<thead><tr>(.*?)</tr></thead>", page).group(1)
    assert head.startswith("<th>dataset</th><th>model</th><th>seeds</th>")
    rows = re.findall(r"<tr><td>atomic:toy</td><td>([^<]*)</td><td>([^<]*)</td>", page)
    assert rows == [("gru4rec", "2 (seeds 1, 2)"), ("pop", "1 (seed 42)")]
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    assert [c.split(": ", 1)[1].split(" (")[0] for c in captions] == [
        "training loss per epoch", "valid ndcg@10 per epoch", "NDCG@10 on head vs tail items",
        "NDCG@10 for short vs long users"]
    assert page.count('<img alt="') == 4


def test_ctr_runs_warm_cold_and_diagnose_plots(runs, tmp_path):
    page = write_report([runs["ctr"]], tmp_path / "r.html", diagnose=None).read_text()
    m = _test_metrics(runs["ctr"])
    assert f"<td>{m['all']['auc']:.4f}</td>" in page and f"<td>{m['warm']['auc']:.4f}</td>" in page
    assert "AUC / UAUC on all, warm and cold rows" in page and "valid auc per epoch" in page
    page = write_report([runs["gru1"], runs["gru2"], runs["pop"]], tmp_path / "d.html", diagnose=runs["diag"]).read_text()
    rep = json.loads((runs["diag"] / "report.json").read_text())
    assert "Complementarity: gru4rec (A) vs pop (B)" in page
    assert f"<td>{rep['groups']['all']['jaccard']:.3f}</td>" in page
    assert page.count('<img alt="') == 5  # the diagnose folder's report.png, embedded
    with pytest.raises(ReportError, match="report.json is missing"):
        write_report([runs["pop"]], tmp_path / "x.html", diagnose=tmp_path)


def test_file_is_self_contained(runs, tmp_path):
    page = write_report(list(runs[k] for k in ("gru1", "gru2", "pop", "other", "ctr")), tmp_path / "r.html",
                        diagnose=runs["diag"], allow_mixed_datasets=True).read_text()
    srcs = re.findall(r"""\bsrc\s*=\s*["']?([^"'\s>]*)""", page, re.I)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"\bhref\s*=|url\s*\(|@import|<script|<link|<iframe|<object|<embed", page, re.I)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)  # the embedded images' bytes
    assert not re.search(r"(https?:)?//[a-z0-9]", text, re.I)
    # one section per dataset, sorted, each with its own table
    assert re.findall(r"<h2>Dataset: ([^<]*)</h2>", page) == ["atomic:other", "atomic:toy", "collm-ml-1m"]


def test_mixed_datasets_are_refused_unless_asked(runs, tmp_path):
    out = tmp_path / "r.html"
    with pytest.raises(ReportError, match=r"2 datasets \(atomic:other, atomic:toy\).*--allow-mixed-datasets"):
        write_report([runs["gru1"], runs["other"]], out)
    assert not out.exists() and not list(tmp_path.iterdir())
    r = runner.invoke(app, ["report", str(runs["gru1"]), str(runs["ctr"]), "--out", str(out)])
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "2 datasets (atomic:toy, collm-ml-1m)" in said and not out.exists()
    r = runner.invoke(app, ["report", str(runs["gru1"]), str(runs["ctr"]), "--out", str(out), "--allow-mixed-datasets"])
    assert r.exit_code == 0, r.output
    assert "report written to" in r.output and out.read_text().startswith("<!DOCTYPE html>")


def test_hostile_folder_names_titles_and_labels_are_escaped(runs, tmp_path):
    evil = "<script>alert(1)</script>"
    run = tmp_path / f"run {evil.replace('/', '')}"
    shutil.copytree(runs["pop"], run)
    cfg = (run / "config.yaml").read_text().replace("name: atomic:toy", "name: '<img src=x onerror=alert(2)>'")
    (run / "config.yaml").write_text(cfg)
    (run / "intents.json").write_text(json.dumps([{"latent": 3, "label": evil, "keywords": [], "density": 0.5,
                                                   "lm_label": "a & b", "top_items": ["1"],
                                                   "top_item_texts": [f"Movie {evil} $x$"]}]))
    page = write_report([run], tmp_path / "r.html").read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "Intent library" in page and "a &amp; b" in page and "all 1 live intents" in page


def test_damaged_or_missing_runs_and_a_failed_write_leave_nothing(runs, tmp_path, monkeypatch):
    with pytest.raises(ReportError, match="metrics.json is missing"):
        write_report([tmp_path], tmp_path / "r.html")
    bad = tmp_path / "bad"
    shutil.copytree(runs["pop"], bad)
    (bad / "metrics.json").write_text("{not json")
    r = runner.invoke(app, ["report", str(bad), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and "metrics.json is not valid JSON" in " ".join(r.output.split())
    dup = tmp_path / "dup"
    shutil.copytree(runs["gru1"], dup)
    with pytest.raises(ReportError, match="same settings and seed 1"):
        write_report([runs["gru1"], dup], tmp_path / "r.html")
    # the rename fails (full disk, a vanished folder): no report and no temporary file are left
    import semcollab.runs.files

    def fail(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(semcollab.runs.files.os, "replace", fail)
    out = tmp_path / "out"
    r = runner.invoke(app, ["report", str(runs["pop"]), "--out", str(out / "r.html")])
    assert r.exit_code == 2 and "No space left on device" in r.output
    assert list(out.iterdir()) == []


CHROMIUM = "/usr/bin/chromium"


def test_report_in_headless_chromium_and_screenshot(runs, tmp_path):
    """The page opens offline in Chromium with no console error, every image decoded; with
    SEMCOLLAB_UPDATE_SCREENSHOTS=1 it saves docs/images/report.png."""
    import os
    from pathlib import Path

    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: the browser check needs Debian's chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser check needs playwright")
    page_file = write_report([runs["gru1"], runs["gru2"], runs["pop"], runs["other"], runs["ctr"]],
                             tmp_path / "report.html", diagnose=runs["diag"], allow_mixed_datasets=True)
    errors, requests = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
            assert len(images) == 10 and all(done and width > 0 for done, width in images), images
            assert page.title().startswith("semcollab report")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            if os.environ.get("SEMCOLLAB_UPDATE_SCREENSHOTS") == "1":  # a test run leaves the checkout as it was
                out = Path(__file__).resolve().parents[2] / "docs" / "images" / "report.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests  # nothing from the network
