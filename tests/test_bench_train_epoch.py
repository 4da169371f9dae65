"""benchmarks/bench_train_epoch.py: one epoch of a model on tiny data, the same batches and start each call (so two
code versions compare on the same work)."""

from tests.conftest import write_atomic
from tests.script_loader import load_script

_mod = load_script("benchmarks/bench_train_epoch.py")


def test_one_epoch_reports_its_batches_and_a_repeatable_loss(tmp_path):
    path = write_atomic(tmp_path / "toy")
    args = ["--model", "sasrec", "--dataset", "atomic:toy", "--set", f"data.path={path}", "--set",
            "model_params.hidden=16", "--set", "train.neg_samples=8", "--set", "train.batch_size=8"]
    first, again = _mod.main(args), _mod.main(args)
    assert first["batches"] >= 3 and first["epoch_seconds"] > 0 and first["model"] == "sasrec"
    assert first["mean_loss"] == again["mean_loss"] > 0
    other = _mod.main([*args, "--seed", "2"])
    assert other["mean_loss"] != first["mean_loss"]


def test_validate_times_validation_and_test_with_their_metrics(tmp_path):
    path = write_atomic(tmp_path / "toy")
    args = ["--model", "sasrec", "--dataset", "atomic:toy", "--set", f"data.path={path}", "--set",
            "model_params.hidden=16", "--set", "train.neg_samples=8", "--set", "train.batch_size=8", "--validate"]
    first, again = _mod.main(args), _mod.main(args)
    assert first["validate_seconds"] > 0 and first["test_breakdowns_seconds"] > 0
    assert 0 <= first["valid_ndcg@10"] <= 1 and set(first["test"]) == {"overall", "head", "tail", "short_users"}
    assert first["valid_ndcg@10"] == again["valid_ndcg@10"] and first["test"] == again["test"]
