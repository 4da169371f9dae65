import numpy as np
import pytest

from semcollab.lm import encode_texts

from ..tolerance import assert_close_rounding, transformer_reductions

TEXTS = ["toy story", "the golden eye action thriller 1995", "drama", "space war : love of the movie title", "comedy"]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_batched_equals_one_at_a_time(lm, side, pooling):
    model, tok, *_ = lm
    tok.padding_side = side
    batched = encode_texts(model, tok, TEXTS, pooling=pooling, batch_size=3)
    single = np.stack([encode_texts(model, tok, [t], pooling=pooling, batch_size=1)[0] for t in TEXTS])
    assert batched.dtype == np.float32 and batched.shape == (len(TEXTS), model.config.hidden_size)
    t = max(len(ids) for ids in tok(TEXTS)["input_ids"])  # batched vs alone: other kernel shapes (tests/tolerance.py)
    assert_close_rounding(batched, single, transformer_reductions(model.config, t, pooled=pooling == "mean"))
    assert np.abs(batched[0] - batched[1]).max() > 1e-4  # distinct texts, distinct vectors


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_pooling_picks_last_real_token(lm, side):
    model, tok, *_ = lm
    tok.padding_side = side
    # layer 0 is the input embedding: the pooled vector must be the embedding of each text's last word
    vecs = encode_texts(model, tok, TEXTS, layer=0, pooling="last", batch_size=5)
    last_ids = [tok(t)["input_ids"][-1] for t in TEXTS]
    emb = model.get_input_embeddings().weight[last_ids].detach().numpy()
    np.testing.assert_allclose(vecs, emb, atol=1e-6)


def test_bad_pooling(lm):
    with pytest.raises(ValueError, match="pooling"):
        encode_texts(lm[0], lm[1], TEXTS, pooling="max")
    assert encode_texts(lm[0], lm[1], []).shape == (0, lm[0].config.hidden_size)
