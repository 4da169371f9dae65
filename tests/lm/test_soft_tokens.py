import pytest
import torch

from semcollab.lm import (
    ITEM_TOKEN,
    USER_TOKEN,
    LoRAConfig,
    add_lora,
    embed_with_soft_tokens,
    token_positions,
    yes_no_logits,
)


def _batch(tok):
    texts = [f"toy story {USER_TOKEN} drama {ITEM_TOKEN} movie", f"{USER_TOKEN} action {ITEM_TOKEN}"]
    return tok(texts, padding=True, return_tensors="pt")


def test_injected_vector_changes_output_and_gets_gradients(lm):
    model, tok, yes_id, no_id, ids = lm
    enc = _batch(tok)
    d = model.config.hidden_size
    proj = torch.nn.Linear(8, d)
    src = torch.randn(2, 8)

    def logits(user_vec, item_vec):
        emb = embed_with_soft_tokens(model, enc["input_ids"], {ids[USER_TOKEN]: user_vec, ids[ITEM_TOKEN]: item_vec})
        return yes_no_logits(model, None, enc["attention_mask"], yes_id, no_id, inputs_embeds=emb)

    with torch.no_grad():  # no soft vectors: the same as feeding the ids
        plain = yes_no_logits(model, enc["input_ids"], enc["attention_mask"], yes_id, no_id)
        emb0 = embed_with_soft_tokens(model, enc["input_ids"], {})
        torch.testing.assert_close(yes_no_logits(model, None, enc["attention_mask"], yes_id, no_id, inputs_embeds=emb0),
                                   plain, atol=0, rtol=0)
    item = torch.randn(2, d)
    base = logits(proj(src), item)
    assert torch.equal(base, logits(proj(src), item))  # deterministic
    other = logits(proj(src) + 1.0, item)  # only the injected user vector differs
    assert not torch.allclose(base, other)
    # the vector really sits at the token's position and nowhere else
    emb = embed_with_soft_tokens(model, enc["input_ids"], {ids[USER_TOKEN]: proj(src), ids[ITEM_TOKEN]: item})
    plain = model.get_input_embeddings()(enc["input_ids"])
    changed = (emb != plain).any(-1)
    assert changed.sum(1).tolist() == [2, 2]
    base.sum().backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0


def test_works_through_peft(lm):
    model, tok, yes_id, no_id, ids = lm
    peft = add_lora(model, LoRAConfig(rank=2))
    enc = _batch(tok)
    vec = torch.randn(2, model.config.hidden_size, requires_grad=True)
    emb = embed_with_soft_tokens(peft, enc["input_ids"], {ids[USER_TOKEN]: vec})
    yes_no_logits(peft, None, enc["attention_mask"], yes_id, no_id, inputs_embeds=emb).sum().backward()
    assert vec.grad is not None and vec.grad.abs().sum() > 0


def test_missing_or_repeated_token_names_row(lm):
    model, tok, _, _, ids = lm
    d = model.config.hidden_size
    enc = tok([f"toy {USER_TOKEN}", "toy story"], padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match="row 1 holds .* 0 times"):
        embed_with_soft_tokens(model, enc["input_ids"], {ids[USER_TOKEN]: torch.zeros(2, d)})
    enc = tok([f"toy {USER_TOKEN}", f"{USER_TOKEN} {USER_TOKEN}"], padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match="row 1 holds .* 2 times"):
        embed_with_soft_tokens(model, enc["input_ids"], {ids[USER_TOKEN]: torch.zeros(2, d)})
    with pytest.raises(ValueError, match="shape"):
        embed_with_soft_tokens(model, enc["input_ids"][:1], {ids[USER_TOKEN]: torch.zeros(2, d)})


def test_token_repeated_n_times_takes_n_vectors_in_order(lm):
    model, tok, yes_id, no_id, ids = lm
    d = model.config.hidden_size
    uid = ids[USER_TOKEN]
    enc = tok([f"toy {USER_TOKEN} story {USER_TOKEN} drama", f"{USER_TOKEN} {USER_TOKEN} action"], padding=True,
              return_tensors="pt")
    pos = token_positions(enc["input_ids"], uid, count=2)
    assert pos.shape == (2, 2) and (pos[:, 0] < pos[:, 1]).all()
    assert (enc["input_ids"].gather(1, pos) == uid).all()
    vecs = torch.randn(2, 2, d, requires_grad=True)
    emb = embed_with_soft_tokens(model, enc["input_ids"], {uid: vecs})
    rows = torch.arange(2)[:, None]
    assert torch.equal(emb[rows, pos], vecs.detach())  # the k-th vector at the k-th occurrence
    plain = model.get_input_embeddings()(enc["input_ids"])
    assert (emb != plain).any(-1).sum(1).tolist() == [2, 2]
    emb.sum().backward()
    assert torch.equal(vecs.grad, torch.ones_like(vecs))
    # (B, 1, d) is the same as (B, d) for a token that occurs once
    enc1 = _batch(tok)
    one = torch.randn(2, d)
    assert torch.equal(embed_with_soft_tokens(model, enc1["input_ids"], {uid: one[:, None]}),
                       embed_with_soft_tokens(model, enc1["input_ids"], {uid: one}))


def test_wrong_repeat_count_names_row(lm):
    model, tok, _, _, ids = lm
    d = model.config.hidden_size
    uid = ids[USER_TOKEN]
    enc = tok([f"toy {USER_TOKEN} {USER_TOKEN}", f"{USER_TOKEN} action"], padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match=r"row 1 holds .* 1 times \(need exactly 2 times\)"):
        embed_with_soft_tokens(model, enc["input_ids"], {uid: torch.zeros(2, 2, d)})
    with pytest.raises(ValueError, match=r"row 0 holds .* 2 times \(need exactly 3 times\); 2 of 2 rows"):
        embed_with_soft_tokens(model, enc["input_ids"], {uid: torch.zeros(2, 3, d)})
    with pytest.raises(ValueError, match="shape"):
        embed_with_soft_tokens(model, enc["input_ids"], {uid: torch.zeros(2, 2, d + 1)})
    with pytest.raises(ValueError, match="count"):
        token_positions(enc["input_ids"], uid, count=0)
