"""experiments/hybrid_s3rec/head_mix.py: scale 1 reproduces the run's own metrics, scale 0 scores by the ID head alone,
the learned gates are read where the model computes them, and the scaling never outlives its block."""

import json

import torch

import semcollab
from tests.models.test_alphafuse import ring_table
from tests.models.test_hybrid import SEQS, small
from tests.script_loader import load_script

head_mix = load_script("experiments/hybrid_s3rec/head_mix.py", neighbours=True)


def test_scale_one_is_the_run_and_scale_zero_the_id_head(toy_dir, toy_split, tmp_path):
    table = ring_table(tmp_path / "text.npy", toy_split.n_items)
    run = semcollab.run(model="hybrid", dataset="atomic:toy", log=None, overrides=[
        f"data.path={toy_dir}", f"output_dir={tmp_path / 'runs'}", "train.epochs=2", "train.progress=false",
        "train.loss=sampled_ce", "train.neg_samples=8", *[f"model_params.{k}={v}" for k, v in small(table).items()]])
    res = head_mix.sweep(run.run_dir, [0.0, 1.0], log=lambda s: None)
    own = json.loads((run.run_dir / "metrics.json").read_text())
    zero, one = res["rows"]
    assert one["test_all"] == own["test"]["overall"]["ndcg@10"]
    assert one["valid_tail"] == own["valid"]["tail"]["ndcg@10"]
    assert res["as_trained"] == one  # scale 1 needs no evaluation: the run's metrics.json has it

    net = run.model.eval()
    with torch.inference_mode():
        e, s = net.views()
        h, q, w = net.head_states(SEQS, e)
        learned = net.score(None, SEQS)
        with head_mix.scaled_head_share(net, 0.0):
            id_only = net.score(None, SEQS)
        with head_mix.scaled_head_share(net, 2.0):
            doubled = net.score(None, SEQS)
        torch.testing.assert_close(net.score(None, SEQS), learned)  # restored on leaving the block
    wl = w[:, -1]
    torch.testing.assert_close(id_only, h[:, -1] @ e.T)
    torch.testing.assert_close(doubled, (1 - 2 * wl) * (h[:, -1] @ e.T) + 2 * wl * (q[:, -1] @ s.T))
    assert not torch.allclose(id_only, learned)

    g = res["gates"]
    with torch.no_grad():  # the gates as read for the table: values, not part of a graph
        keep = 1 - net.item_gates()[1:].mean(1)
        len1 = net.user_weights(torch.ones(1, 1, dtype=torch.long))[0, 0, 0]
    assert g["item_id_share_tail"] == float(keep[net.tail[1:]].mean())
    assert g["head_share_len1"] == float(len1)
    assert set(g) == {"item_id_share_head", "item_id_share_tail", "head_share_len1", "head_share_len5",
                      "head_share_len10"}  # max_len 10

    lines = list(head_mix.table_rows([res, {**res, "seed": 2, "rows": [zero]}]))  # seed 2: scale 1 from as_trained
    assert len(lines) == 2 + 2 and "| atomic:toy | runs | 2 |" in lines[2] and lines[3].startswith("| | | | | | | 1 |")
    assert f"| {one['test_all']:.4f} ± 0.0000 |" in lines[3]

    out = tmp_path / "sweep.json"
    assert head_mix.main([str(run.run_dir), "--scales", "0", "--out", str(out)]) == 0
    (saved,) = json.loads(out.read_text())
    assert [r["scale"] for r in saved["rows"]] == [0.0] and saved["rows"][0] == zero  # the same scores again
    assert head_mix.main([str(run.run_dir), "--scales", "--out", str(out)]) == 0  # the gates only
    (saved,) = json.loads(out.read_text())
    assert saved["rows"] == [] and saved["gates"] == g
    gates_only = list(head_mix.table_rows([saved]))
    assert len(gates_only) == 3 and gates_only[2].endswith("|  |  |  |  |  |")


def test_main_refuses_bad_arguments_and_prints_a_table(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        head_mix.main([])
    assert "give hybrid run folders" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        head_mix.main([str(tmp_path), "--scales", "0.5", "-1"])
    assert "--scales must be >= 0" in capsys.readouterr().err
    gates = {"item_id_share_head": 0.99, "item_id_share_tail": 0.98, "head_share_len1": 0.3}
    res = {"dataset": "d", "setting": "s", "seed": 1, "gates": gates, "rows": [
        {"scale": 0.0, "valid_all": 0.1, "test_all": 0.2, "test_tail": 0.05, "test_short": 0.15}]}
    sweep_file = tmp_path / "sweep.json"
    sweep_file.write_text(json.dumps([res]))
    assert head_mix.main(["--table", str(sweep_file)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[2] == "| d | s | 1 | 0.990 | 0.980 | 0.300 | 0 | 0.1000 | 0.2000 | 0.0500 | 0.1500 |"  # one seed: no sd
