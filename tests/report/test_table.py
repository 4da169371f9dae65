import pytest
import yaml

from semcollab.report.table import run_label, seeded_runs


def _run(group, name, seed, finished=True, params=None):
    d = group / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"model": "saerec", "train": {"seed": seed},
                                                   "model_params": params or {}}))
    if finished:
        (d / "metrics.json").write_text("{}")
    return d


def test_seeded_runs_keeps_finished_runs_sorted(tmp_path):
    b = _run(tmp_path, "b", 2)
    a = _run(tmp_path, "a", 1)
    _run(tmp_path, "c", 3, finished=False)  # killed mid-run: no metrics.json
    assert seeded_runs(tmp_path) == [a, b]


def test_seeded_runs_refuses_a_seed_counted_twice(tmp_path):
    _run(tmp_path, "first", 1)
    _run(tmp_path, "again", 1)
    with pytest.raises(ValueError, match="again and first both finished with seed 1"):
        seeded_runs(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such run group"):
        seeded_runs(tmp_path / "missing")


def test_run_label_names_the_variant_params_only():
    cfg = {"model": "saerec", "model_params": {"use_public": False, "n_latents": 512, "fusion": "attention"}}
    assert run_label(cfg) == "saerec [use_public=False, fusion=attention]"
    assert run_label({"model": "sasrec"}) == "sasrec"
