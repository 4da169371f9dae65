import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.lm_helpers import lm  # noqa: F401  (the `lm` fixture, for every test folder)


def _test_threads() -> int:
    """Threads for torch in the test process: SEMCOLLAB_TEST_THREADS, else OMP_NUM_THREADS, else 1 (the suite is
    many tiny ops, and CI's 2 cores may be shared). scripts/test_matrix.sh sets both to run the suite under 1 and 2
    threads, since a kernel's summation order, and so its rounding, may change with the thread count."""
    for name in ("SEMCOLLAB_TEST_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise pytest.UsageError(f"{name}={value!r}: expected a positive whole number of threads")
            return int(value)
    return 1


torch.set_num_threads(_test_threads())
# the LM fixtures and figures of the suite are float32 on every CPU; tests/lm/test_dtype_policy.py tests bf16 itself
os.environ.setdefault("SEMCOLLAB_CPU_BF16", "0")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache dir unless it asks for the real one."""
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def release_resume_locks(tmp_path):
    """For tests that call fit / fit_ctr directly: a finished fit keeps its checkpoint's lock (an open file) until the
    run is saved, and these tests save none, so every lock held under ``tmp_path`` is given up here rather than left
    to interpreter exit (a ResourceWarning each)."""
    yield
    from semcollab.runs.checkpoints import release_resume_locks_under

    release_resume_locks_under(tmp_path)


def write_atomic(directory: Path, n_users=30, n_items=40, per_user=12, seed=0) -> Path:
    """A small RecBole-atomic dataset with a learnable pattern: users walk items in order."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for u in range(1, n_users + 1):
        start = rng.integers(1, n_items + 1)
        for t in range(per_user):
            item = (start + t - 1) % n_items + 1
            rows.append((u, item, float(rng.integers(1, 6)), 1000 * u + t))
    inter = pd.DataFrame(rows, columns=["user_id:token", "item_id:token", "rating:float", "timestamp:float"])
    inter.to_csv(directory / "toy.inter", sep="\t", index=False)
    items = pd.DataFrame({"item_id:token": range(1, n_items + 1),
                          "movie_title:token_seq": [f"Movie {i}" for i in range(1, n_items + 1)],
                          "class:token_seq": ["Drama" if i % 2 else "Comedy" for i in range(1, n_items + 1)]})
    items.to_csv(directory / "toy.item", sep="\t", index=False)
    return directory


@pytest.fixture
def toy_dir(tmp_path):
    return write_atomic(tmp_path / "toy")


@pytest.fixture
def toy_split(toy_dir):
    from semcollab.config import DataConfig
    from semcollab.data import load_split

    return load_split(DataConfig(name="atomic:toy", path=str(toy_dir), cache=False))


@pytest.fixture
def shared_dir():
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared assets not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def ml100k_dir():
    """RecBole's ML-100K files (fetched once from PyPI's recbole wheel into the user cache)."""
    from semcollab.data import DataError
    from semcollab.data.sources.ml100k import locate_ml100k

    try:
        return locate_ml100k(Path(os.environ.get("SEMCOLLAB_REAL_CACHE", Path.home() / ".cache" / "semcollab")))
    except DataError as exc:
        pytest.skip(f"ML-100K unavailable offline: {exc}")


class Killed(Exception):
    """Raised by :func:`kill_after`'s log callback: a stand-in for a SIGKILL right after an epoch's checkpoint."""


def kill_after(epoch: int):
    """A log callback that stops a training run right after ``epoch`` (its checkpoint is already written)."""
    def log(line: str) -> None:
        if line.startswith(f"epoch={epoch} "):
            raise Killed
    return log


WORDS = ["toy", "story", "animation", "comedy", "action", "thriller", "drama", "movie", "title", "genres", "year",
         "golden", "eye", "space", "war", "love", "the", "a", "of", "1995", ":", ";", ".", "(", ")"]


def _tokenizer(path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]")
    assert tok.tokenize("Toy Story")[0] == "toy"
    tok.save_pretrained(path)
    return tok


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 1-layer BERT saved like a hub model (tests only; real runs use real weights)."""
    pytest.importorskip("transformers")
    import torch
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    _tokenizer(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(path)
    return path


def _save_tiny_llama(path, causal_lm: bool, max_positions: int):
    """A randomly initialised 1-layer Llama (bare, or with an LM head) with the test tokenizer, saved at ``path``."""
    pytest.importorskip("transformers")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

    _tokenizer(path)
    torch.manual_seed(0)
    cls = LlamaForCausalLM if causal_lm else LlamaModel
    cls(LlamaConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=2, intermediate_size=64, max_position_embeddings=max_positions,
                    pad_token_id=0)).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A randomly initialised 1-layer causal LM (Llama architecture) for last-token pooling."""
    return _save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), causal_lm=False, max_positions=64)


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory):
    """The same with an LM head, for generation (tests the plumbing, not label quality); few-shot prompts
    run to a few hundred tokens, hence the longer position range."""
    return _save_tiny_llama(tmp_path_factory.mktemp("tiny-causal"), causal_lm=True, max_positions=512)


@pytest.fixture(scope="session")
def tiny_yes_no_lm(tiny_causal_lm, tmp_path_factory):
    """The tiny random Llama of tests/conftest.py with 'yes'/'no' in its vocabulary (answer tokens)."""
    import torch

    from semcollab.lm import load_causal_lm

    model, tok = load_causal_lm(str(tiny_causal_lm))
    tok.add_tokens(["yes", "no"])
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
            layer.weight[-2:] = torch.randn(2, layer.weight.shape[1], generator=g) * 0.2
    path = tmp_path_factory.mktemp("tiny-yes-no")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
