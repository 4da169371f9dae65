"""experiments/hybrid_s3rec/run.sh's queue: ABLATIONS picks the ablation settings, and bad names are refused before
anything runs (a stand-in for the command line records its calls, so nothing trains or encodes)."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def queue(tmp_path, **env):
    """Run the script with a fake ``semcollab`` that appends each call to ``calls.txt``; (result, queued jobs)."""
    out = tmp_path / "out"
    fake = tmp_path / "fake-semcollab"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {tmp_path / "calls.txt"}\n')
    fake.chmod(0o755)
    r = subprocess.run(["bash", "experiments/hybrid_s3rec/run.sh"], cwd=REPO, capture_output=True, text=True,
                       timeout=60, env={**os.environ, "SEMCOLLAB": str(fake), "OUT": str(out), "STAGES": "ablate",
                                        "ABLATE_DATASETS": "Toys_and_Games", "TABLE": str(tmp_path / "t.md"), **env})
    jobs = [line for f in out.glob("jobs.*.txt") for line in f.read_text().splitlines()] if out.exists() else []
    return r, jobs


def test_ablations_picks_the_named_settings_of_the_null_space_view(tmp_path):
    r, jobs = queue(tmp_path, ABLATE_VIEW="null_space", ABLATIONS="no-tail-distill no-semantic-head", SEEDS="1 2")
    assert r.returncode == 0, r.stderr
    assert len(jobs) == 4
    folders = sorted({j.split("--output_dir=")[1].split("/")[-1] for j in jobs})
    assert folders == ["hybrid-ns-128-no-semantic-head", "hybrid-ns-128-no-tail-distill"]
    distill = [j for j in jobs if j.endswith("no-tail-distill")]
    assert all("--model_params.item_view=null_space" in j and "--model_params.tail_distill=0" in j for j in distill)
    assert sorted(j.split("--train.seed=")[1].split()[0] for j in distill) == ["1", "2"]


def test_default_queues_every_ablation_but_the_adapter_one_for_the_null_space_view(tmp_path):
    r, jobs = queue(tmp_path, ABLATE_VIEW="null_space", SEEDS="1")
    assert r.returncode == 0, r.stderr
    assert len(jobs) == 8 and not any("linear-adapter" in j for j in jobs)


def test_unknown_or_inapplicable_ablation_is_refused_before_queueing(tmp_path):
    r, jobs = queue(tmp_path, ABLATIONS="no-gates no-such-thing")
    assert r.returncode == 2 and "unknown ABLATIONS entry no-such-thing" in r.stderr and jobs == []
    r, jobs = queue(tmp_path, ABLATE_VIEW="null_space", ABLATIONS="linear-adapter")
    assert r.returncode == 2 and "linear-adapter needs ABLATE_VIEW=gated" in r.stderr and jobs == []


def test_only_the_queued_encoder_ablations_encode_text(tmp_path):
    """A component ablation alone encodes nothing; an encoder ablation encodes its own encoder only."""
    calls = tmp_path / "calls.txt"
    r, _ = queue(tmp_path, ABLATE_VIEW="null_space", ABLATIONS="no-tail-distill", SEEDS="1")
    assert r.returncode == 0 and [c.split()[0] for c in calls.read_text().splitlines()] == ["train"]
    calls.unlink()
    r, _ = queue(tmp_path, ABLATIONS="mpnet no-gates", SEEDS="1")
    embeds = [line for line in calls.read_text().splitlines() if line.startswith("embed")]
    assert r.returncode == 0 and len(embeds) == 1 and "--encoder mpnet" in embeds[0]
