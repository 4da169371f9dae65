import numpy as np
import pytest
import torch

from semcollab.methods.saerec.sae import SAEConfig, SparseAutoencoder, sae_quality, train_sae


def sparse_data(n=600, d=16, atoms=32, per=3, seed=0):
    """Rows that are sums of ``per`` of ``atoms`` random unit directions: a dictionary an SAE can find."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(atoms, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    x = np.zeros((n, d))
    for i in range(n):
        idx = rng.choice(atoms, per, replace=False)
        x[i] = (rng.uniform(0.5, 1.5, per)[:, None] * dirs[idx]).sum(0)
    return x.astype(np.float32)


def test_topk_sae_learns_and_is_exactly_k_sparse():
    x = sparse_data()
    sae, st = train_sae(x, SAEConfig(expansion=4, k=3, steps=600, batch_size=64, lr=3e-3))
    assert st["loss_last_epoch"] < 0.3 * st["loss_first_epoch"]
    assert st["explained_variance"] > 0.8
    assert st["l0"] == 3.0
    assert 0 <= st["dead_fraction"] < 1


def test_relu_l1_variant_and_tied_decoder():
    x = sparse_data()
    sae, st = train_sae(x, SAEConfig(kind="relu", expansion=4, l1=1e-2, steps=400, batch_size=64, lr=3e-3, tied=True))
    assert sae.W_dec is None and st["explained_variance"] > 0.5
    assert torch.allclose(sae.decoder().norm(dim=0), torch.ones(sae.n_latents), atol=1e-5)


def test_save_load_roundtrip(tmp_path):
    x = torch.as_tensor(sparse_data(n=50))
    sae = SparseAutoencoder(16, SAEConfig(expansion=2, k=4))
    sae.save(tmp_path)
    back = SparseAutoencoder.load(tmp_path)
    assert torch.equal(sae.encode(x), back.encode(x))
    assert sae_quality(back, x)["l0"] == 4.0


def test_bad_kind():
    with pytest.raises(ValueError, match="topk or relu"):
        SparseAutoencoder(4, SAEConfig(kind="gated"))
