"""Every ranking model's ``serving_factors()`` against its own ``score``: the server answers a request with
``encode(users, seqs) @ items.T`` (``exclude`` columns at -inf), so the two must agree for each model; a subclass
with a score of its own must not inherit its parent's factoring."""

import numpy as np
import pytest
import torch

from semcollab.models import build_model
from semcollab.models.fusion import FusionConfig, SemCollabFusion
from semcollab.models.sasrec import SASRec
from semcollab.models.semantic import SemanticConfig, SemanticMean
from tests.models.test_alphafuse import ring_table

USERS = torch.tensor([0, 3, 5])
SEQS = torch.tensor([[0, 0, 1, 2], [5, 6, 7, 8], [0, 0, 0, 9]])


class DoubledSASRec(SASRec):
    def score(self, users, seqs):
        return 2 * super().score(users, seqs) + 1


def vectors(n_items: int, missing: int | None = None) -> np.ndarray:
    vec = np.random.default_rng(0).normal(size=(n_items + 1, 12)).astype(np.float32)
    vec[0] = 0
    if missing is not None:
        vec[missing] = 0  # an item without text
    return vec


def make(name, split, tmp_path):
    if name == "semantic":
        return SemanticMean(split.n_users, split.n_items, SemanticConfig(), vectors(split.n_items, missing=4))
    if name == "fusion":
        return SemCollabFusion(split.n_users, split.n_items, FusionConfig(hidden=16), vectors(split.n_items))
    if name == "doubled":
        return DoubledSASRec(split.n_users, split.n_items)
    params = {} if name == "pop" else {"hidden": 16}
    if name in ("alphafuse", "hybrid"):
        params.update(item_table=str(ring_table(tmp_path / "text.npy", split.n_items)), max_len=10)
        if name == "alphafuse":
            params["null_dim"] = 6
        else:
            params.update(item_view="null_space", null_dim=6, similarity="cosine")
    if name == "sasrec-cos":
        name, params["similarity"] = "sasrec", "cosine"
    return build_model(name, params, split)


@pytest.mark.parametrize("name", ["sasrec", "sasrec-cos", "bert4rec", "gru4rec", "mf-bpr", "pop", "semantic",
                                  "fusion", "alphafuse", "hybrid"])
def test_factored_scores_equal_score(name, toy_split, tmp_path):
    torch.manual_seed(0)
    model = make(name, toy_split, tmp_path).eval()
    with torch.inference_mode():
        want = model.score(USERS, SEQS)
        fac = model.serving_factors()
        assert fac is not None, f"{name} has no serving factors"
        got = fac.encode(USERS, SEQS) @ fac.items.T
        if fac.exclude is not None:
            got = got.masked_fill(fac.exclude, -torch.inf)
    assert got.shape == want.shape == (3, toy_split.n_items + 1)
    assert torch.equal(torch.isinf(got[:, 1:]), torch.isinf(want[:, 1:]))
    finite = torch.isfinite(want[:, 1:])
    torch.testing.assert_close(got[:, 1:][finite], want[:, 1:][finite], rtol=1e-5, atol=1e-5)
    if name == "semantic":  # the item without text is excluded, not merely scored zero
        assert fac.exclude is not None and fac.exclude[4] and torch.isinf(got[:, 4]).all()


def test_a_subclass_scoring_its_own_way_gets_no_factoring(toy_split, tmp_path):
    assert make("doubled", toy_split, tmp_path).serving_factors() is None
