"""Issue 28, sections 3, 4 and 6: every CLI option is range-checked before it reaches an encoder or an
allocator; ``--dataset`` and ``data.name`` have one source of truth; a config file that is no regular file, too
large, invalid or binary YAML is refused with a message naming it."""

import json
import os
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from semcollab.cli import app
from tests.tasks.test_ctr_cli import write_collm_folder

runner = CliRunner()


def _fails(args, *needles):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output and not isinstance(r.exception, (AssertionError, TypeError, ValueError))
    text = " ".join(r.output.replace("│", " ").split())  # rich wraps long lines (in a box for usage errors)
    for n in needles:  # rich also breaks long paths mid-word
        assert n in text or "".join(n.split()) in "".join(text.split()), (n, r.output)
    return text


def _ok(args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output


@pytest.fixture
def toy(toy_dir):
    return ["--dataset", "atomic:toy", f"--data.path={toy_dir}"]


@pytest.fixture(scope="module")
def tiny_st(tiny_bert, tmp_path_factory):
    """A sentence-transformers folder (modules.json) around the tiny BERT: its dim is known only once loaded."""
    st = pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer
    path = tmp_path_factory.mktemp("tiny-st")
    st.SentenceTransformer(modules=[Transformer(str(tiny_bert)), Pooling(32)]).save(str(path))
    return path


# ------------------------------------------------------------------------------ section 3: option ranges
@pytest.mark.parametrize("bs", ["-1", "0"])
def test_embed_batch_size_below_one_is_refused(toy, tiny_bert, tmp_path, bs):
    # was: exit 0 with all-zero vectors (range(0, n, -1) is empty), cached for every later run
    _fails(["embed", *toy, "--encoder", tiny_bert, "--batch-size", bs, "--out", tmp_path / "out"], "--batch-size",
           "greater than or equal to 1")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dim", ["0", "-3"])
def test_embed_pca_dim_below_one_is_refused(toy, tiny_bert, tmp_path, dim):
    # was: 0 silently meant "no PCA"; -3 kept all but 3 components
    _fails(["embed", *toy, "--encoder", tiny_bert, "--pca-dim", dim, "--out", tmp_path], "--pca-dim", "greater than or equal to 1")


def test_embed_pca_dim_above_the_registry_or_folder_dim_is_refused_before_encoding(toy, tiny_bert, tmp_path):
    # was: a ValueError traceback from fit_pca after the encoding; the folder's config.json says 32
    _fails(["embed", *toy, "--encoder", tiny_bert, "--pca-dim", "33", "--out", tmp_path],
           "--pca-dim must be at most the encoder's dim", "32", "got 33")
    _fails(["embed", *toy, "--encoder", tiny_bert, "--pca-dim", "1000", "--out", tmp_path], "training items")


def test_embed_pca_dim_above_a_dim_known_only_once_encoded_is_refused(toy, tiny_st, tmp_path):
    _fails(["embed", *toy, "--encoder", tiny_st, "--pca-dim", "33", "--out", tmp_path / "out"],
           "--pca-dim must be at most the encoder's dim", "32")
    assert not (tmp_path / "out").exists()
    out = _ok(["embed", *toy, "--encoder", tiny_st, "--pca-dim", "4", "--out", tmp_path / "out"])
    assert np.load(tmp_path / "out" / "toy" / "item_embeddings.npy").shape == (35, 4), out  # 34 items + padding


def test_embed_whiten_without_pca_is_refused(toy, tiny_bert, tmp_path):
    # was: exit 0, --whiten silently ignored (whitening is part of the PCA)
    _fails(["embed", *toy, "--encoder", tiny_bert, "--whiten", "--out", tmp_path], "--whiten", "--pca-dim D", "32")


def test_embed_pooling_values(toy, tiny_bert, tiny_st, tmp_path):
    # was: a ValueError traceback from inside the encoder
    _fails(["embed", *toy, "--encoder", tiny_bert, "--pooling", "max", "--out", tmp_path], "--pooling", "mean or last")
    # was: exit 0 with the model's own mean pooling: --pooling last silently ignored
    _fails(["embed", *toy, "--encoder", tiny_st, "--pooling", "last", "--out", tmp_path], "sentence-transformers")
    _fails(["embed", *toy, "--encoder", "minilm", "--pooling", "last", "--out", tmp_path], "sentence-transformers")
    _ok(["embed", *toy, "--encoder", tiny_bert, "--pooling", "last", "--out", tmp_path])


@pytest.mark.parametrize("opt", ["--encoder", "--template"])
def test_embed_empty_names_are_refused(toy, tmp_path, opt):
    # was: --encoder "" loaded the current folder as a model; --template "" rendered every text empty
    _fails(["embed", *toy, opt, "", "--out", tmp_path], f"{opt} must not be empty")


@pytest.mark.parametrize("opt,value", [("--top", "0"), ("--top", "-2"), ("--lm-top", "0"), ("--lm-top", "-1"),
                                       ("--judge-top", "0")])
def test_intents_counts_below_one_are_refused(toy, tiny_bert, tmp_path, opt, value):
    # was: --lm-top 0 "no live latents" (misleading); --lm-top -1 a long wait; --top 0 an empty table
    _fails(["intents", *toy, "--encoder", tiny_bert, opt, value, "--out", tmp_path], opt, "greater than or equal to 1")


def test_intents_empty_lm_name_is_refused(toy, tiny_bert, tmp_path):
    # was: exit 0 without LM labels ("" is falsy)
    _fails(["intents", *toy, "--encoder", tiny_bert, "--lm-labels", "", "--sae.steps=5", "--out", tmp_path],
           "--lm-labels must not be empty")


@pytest.mark.parametrize("bs", ["0", "-1"])
def test_reaemb_table_batch_size_below_one_is_refused(toy, tmp_path, bs):
    # was: 0 silently meant table_batch_size
    _fails(["reaemb", "table", "--plain", *toy, "--batch-size", bs, "--out", tmp_path / "t.npy"], "--batch-size")


@pytest.mark.parametrize("cmd", [["reaemb", "table", "--plain"], ["reaemb", "bench-kv"]])
def test_reaemb_empty_lm_is_refused(toy, tmp_path, cmd):
    # was: --lm "" silently meant the default LM (smollm2-135m)
    _fails([*cmd, *toy, "--lm", ""], "--lm must not be empty")


@pytest.mark.parametrize("cmd", [["quickstart", "--epochs", "0"], ["reaemb", "bench-kv", "--n-items", "0"],
                                 ["reaemb", "bench-kv", "--repeats", "0"], ["ctr", "evaluate", ".", "--subsample-seed",
                                                                             "-1"]])
def test_other_counts_and_seeds_are_range_checked(cmd):
    _fails(cmd, "Invalid value")


# ------------------------------------------------------------------- section 3: one source of truth for data
def test_train_uses_data_name_alone(toy_dir, tmp_path):
    # was: --data.name replaced by the --dataset default ml-100k
    out = _ok(["train", "--model", "pop", "--data.name=atomic:toy", f"--data.path={toy_dir}",
               f"--output_dir={tmp_path / 'runs'}"])
    assert "toy test" in out
    (run,) = (tmp_path / "runs").iterdir()
    assert "toy" in run.name


def test_train_refuses_dataset_and_data_name_that_differ(toy_dir, tmp_path):
    _fails(["train", "--model", "pop", "--dataset", "ml-100k", "--data.name=atomic:toy", f"--data.path={toy_dir}",
            f"--output_dir={tmp_path}"], "--dataset ml-100k", "data.name=atomic:toy", "an override")
    # the same name twice is fine
    _ok(["train", "--model", "pop", "--dataset", "atomic:toy", "--data.name=atomic:toy", f"--data.path={toy_dir}",
         f"--output_dir={tmp_path / 'runs'}"])


def test_yaml_data_name_is_used_and_conflicts_name_the_file(toy_dir, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  name: atomic:toy\n  path: {toy_dir}\noutput_dir: {tmp_path / 'runs'}\n")
    # was: trained on ml-100k (the --dataset default) with the toy path
    assert "toy test" in _ok(["train", "--model", "pop", "--config", cfg])
    _fails(["train", "--model", "pop", "--config", cfg, "--dataset", "ml-1m"], "--dataset ml-1m",
           "data.name=atomic:toy", str(cfg))
    _fails(["compare", "--models", "pop", "--config", cfg, "--dataset", "ml-1m"], "--dataset ml-1m")


def test_data_prepare_argument_and_data_name_must_agree(toy_dir):
    # was: the DATASET argument silently replaced --data.name
    _fails(["data", "prepare", "ml-100k", "--data.name=atomic:toy", f"--data.path={toy_dir}"], "DATASET argument")


def test_embed_uses_data_name_alone(toy_dir, tiny_bert, tmp_path):
    _ok(["embed", "--data.name=atomic:toy", f"--data.path={toy_dir}", "--encoder", tiny_bert, "--out", tmp_path])
    assert (tmp_path / "toy" / "item_embeddings.npy").exists()


def test_ctr_train_data_name_alone_is_used(tmp_path):
    data = write_collm_folder(tmp_path / "collm")
    # was: trained on the CoLLM ML-1M split (the --dataset default), exit 0
    _fails(["ctr", "train", "--data.name=nosuch", f"--data.path={data}", "--data.allow_pickle=true", f"--output_dir={tmp_path}"], "nosuch")
    _fails(["ctr", "train", "--dataset", "collm-ml-1m", "--data.name=nosuch", f"--data.path={data}", "--data.allow_pickle=true"],
           "--dataset collm-ml-1m", "data.name=nosuch")


def test_reaemb_dataset_and_data_name_must_agree(toy_dir):
    _fails(["reaemb", "table", "--plain", "--dataset", "s3rec:Toy", "--data.name=atomic:toy"], "--dataset s3rec:Toy")


# --------------------------------------------------------------------- section 4: config files and sizes
def _fifo_writer(path, text, deadline):
    """Write ``text`` to the FIFO once a reader opened it (old code blocked there); give up at ``deadline``."""
    while time.monotonic() < deadline:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            time.sleep(0.05)
            continue
        os.write(fd, text.encode())
        os.close(fd)
        return


def test_config_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    # a writer unblocks the old code after a few seconds, so it fails this test instead of hanging it
    threading.Thread(target=_fifo_writer, args=(fifo, "model: nosuch\n", time.monotonic() + 20), daemon=True).start()
    t0 = time.monotonic()
    _fails(["train", "--config", fifo], str(fifo), "not a regular file")
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("dev", ["/dev/zero", "/dev/urandom"])
def test_config_device_is_refused(dev):
    if not os.path.exists(dev):
        pytest.skip(f"{dev} missing")
    _fails(["ctr", "train", "--config", dev], dev, "not a regular file")


def test_config_oversized_and_folder_are_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 120_000)  # valid YAML, 1.2 MB
    _fails(["train", "--config", big], str(big), "more than the 1048576")
    _fails(["train", "--config", tmp_path], str(tmp_path), "is a folder")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    _fails(["train", "--config", tmp_path / "loop"], "loop", "cannot be read")


def test_config_invalid_or_binary_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: pop\ndata:\n  name: [unclosed\n  path: x\n")
    _fails(["train", "--config", bad], str(bad), "not valid YAML", "line 4")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"model: pop\n\x89PNG\x00\xff\xfe")
    _fails(["ctr", "train", "--config", binary], str(binary), "not UTF-8", "line 2")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just words\n")
    _fails(["train", "--config", scalar], str(scalar), "top level must be a mapping")


@pytest.mark.parametrize("key,value", [("data.history_len", 100_000_000), ("model_params.dim", 10**11)])
def test_ctr_sizes_have_an_upper_bound(tmp_path, key, value):
    # was: an allocator traceback (or a machine out of memory)
    data = write_collm_folder(tmp_path / "collm")
    _fails(["ctr", "train", f"--data.path={data}", "--data.allow_pickle=true", f"--{key}={value}", f"--output_dir={tmp_path}"], key, "at most")


@pytest.mark.parametrize("model,key", [("sasrec", "hidden"), ("sasrec", "max_len"), ("sasrec", "layers"),
                                       ("gru4rec", "hidden"), ("mf-bpr", "hidden")])
def test_ranking_sizes_have_an_upper_bound(toy, tmp_path, model, key):
    _fails(["train", "--model", model, *toy, f"--model_params.{key}=10000000000", f"--output_dir={tmp_path}"],
           f"model_params.{key}", "at most")


def test_negative_samples_have_an_upper_bound(toy, tmp_path):
    _fails(["train", "--model", "sasrec", *toy, "--train.loss=bce", "--train.neg_samples=10000000000",
            f"--output_dir={tmp_path}"], "train.neg_samples", "at most")


# ---------------------------------------------------------------------------- section 6: messages
def test_intents_sae_k_above_the_width_is_a_config_error(toy, tiny_bert, tmp_path):
    # was: a torch topk traceback; the width is expansion x dim = 2 x 32
    _fails(["intents", *toy, "--encoder", tiny_bert, "--sae.k=100000", "--sae.expansion=2", "--sae.steps=5",
            "--out", tmp_path], "sae.k", "between 1 and the SAE width", "= 64", "got 100000")


def test_ctr_table_names_a_ranking_run_folder(toy_dir, tmp_path):
    data = write_collm_folder(tmp_path / "collm")
    _ok(["ctr", "train", "--model", "mf", f"--data.path={data}", "--data.allow_pickle=true", "--train.epochs=1", "--train.progress=false",
         f"--output_dir={tmp_path / 'ctr'}", "--model_params.dim=4"])
    _ok(["train", "--model", "pop", "--dataset", "atomic:toy", f"--data.path={toy_dir}",
         f"--output_dir={tmp_path / 'rank'}"])
    (ctr_run,), (rank_run,) = (tmp_path / "ctr").iterdir(), (tmp_path / "rank").iterdir()
    # was: "error: 'all'"
    _fails(["ctr", "table", ctr_run, rank_run], str(rank_run), "not a CTR run", "ranking run", "semcollab table")
    assert json.loads((ctr_run / "metrics.json").read_text())["test"]["all"]["auc"] is not None


# ----------------------------------------------------------------- found by tests/test_cli_fuzz.py
@pytest.mark.parametrize("override,needle", [
    ("train.lr=inf", "expects a finite number"),  # was: accepted (inf > 0), then NaN scores
    ("train.lr=nan", "expects a finite number"),
    (f"train.lr={10**400}", "train.lr"),  # was: OverflowError traceback (int too large to convert to float)
    ("data.user_k=9223372036854775808", "64-bit range"),  # was: OverflowError traceback from pandas
    ("train.epochs=\x1f", "train.epochs"),  # was: yaml ReaderError traceback
    ("train.epochs={a: 1", "train.epochs"),
])
def test_override_values_the_fuzz_found(toy, tmp_path, override, needle):
    _fails(["train", "--model", "pop", *toy, f"--{override}", f"--output_dir={tmp_path}"], needle)


def test_a_diverged_run_is_a_message_not_a_traceback(toy, tmp_path):
    # was: FloatingPointError("model produced NaN scores") traceback
    _fails(["train", "--model", "sasrec", *toy, "--train.lr=2147483648", "--train.epochs=2", "--train.progress=false",
            "--model_params.hidden=8", "--model_params.layers=1", f"--output_dir={tmp_path}"], "NaN", "diverged",
           "train.lr")
