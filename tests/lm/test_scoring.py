import pytest
import torch

from semcollab.lm import (
    LoRAConfig,
    add_lora,
    answer_token_ids,
    embed_with_soft_tokens,
    score_prompts,
    yes_no_logits,
    yes_no_logits_full_head,
    yes_no_loss,
    yes_probability,
)

from ..lm_helpers import randomize_lora
from ..tolerance import assert_close_rounding, transformer_reductions

TEXTS = ["toy story drama . answer :", "the golden eye action thriller of 1995 ; space war love . answer :",
         "comedy . answer :"]


def _check_matches_full_head(model, enc, yes_id, no_id):
    with torch.no_grad():
        two = yes_no_logits(model, enc["input_ids"], enc["attention_mask"], yes_id, no_id)
        full = yes_no_logits_full_head(model, enc["input_ids"], enc["attention_mask"], yes_id, no_id)
    assert two.shape == (len(enc["input_ids"]), 2)
    # the same body; only the head's product differs (2 rows vs the whole vocabulary): one reduction of the hidden
    # size, and a softmax over two (its slope is at most 1/4 per logit), both relative to the logits' magnitude
    hidden = model.config.hidden_size
    assert_close_rounding(two, full, [hidden], "two head rows vs full head")
    assert_close_rounding(yes_probability(two), torch.softmax(full, -1)[:, 0], [hidden, 2], "yes probability",
                          scale=full)
    return two


@pytest.mark.parametrize("lora", [False, True])
def test_two_rows_match_full_head_left_padded(lm, lora):
    model, tok, yes_id, no_id, _ = lm
    if lora:
        model = add_lora(model, LoRAConfig(rank=4, dropout=0.0))
        randomize_lora(model)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    assert (enc["attention_mask"][:, -1] == 1).all() and (enc["attention_mask"] == 0).any()  # left padded
    two = _check_matches_full_head(model, enc, yes_id, no_id)
    # padding does not change a row's score (positions counted over real tokens); one row alone runs other kernel
    # shapes than the padded batch: the whole forward pass's rounding (tests/tolerance.py)
    reductions = transformer_reductions(model.config, enc["input_ids"].shape[1], lora_rank=4 if lora else 0,
                                        pooled=False, head=True)
    for i, text in enumerate(TEXTS):
        one = tok([text], return_tensors="pt")
        with torch.no_grad():
            assert_close_rounding(yes_no_logits(model, one["input_ids"], one["attention_mask"], yes_id, no_id),
                                  two[i:i + 1], reductions, f"row {i} alone vs padded")
    probs = score_prompts(model, tok, TEXTS, yes_id, no_id, batch_size=2)
    assert_close_rounding(probs, yes_probability(two), reductions + [2], "batches of 2 vs 3", scale=two)


def test_lora_changes_scores(lm):
    model, tok, yes_id, no_id, _ = lm
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = yes_no_logits(model, enc["input_ids"], enc["attention_mask"], yes_id, no_id)
        peft = add_lora(model, LoRAConfig(rank=4, dropout=0.0))
        randomize_lora(peft)
        after = yes_no_logits(peft, enc["input_ids"], enc["attention_mask"], yes_id, no_id)
    assert not torch.allclose(before, after)


def test_gemma3_softcapping_matches_full_head():
    try:
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    except ImportError as exc:
        pytest.skip(f"this transformers has no Gemma3ForCausalLM: {exc}")
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
                           sliding_window=4, final_logit_softcapping=0.5, pad_token_id=0)
    model = Gemma3ForCausalLM(cfg).eval()
    ids = torch.tensor([[0, 0, 0, 5, 6, 7], [0, 8, 9, 10, 11, 12], [13, 14, 15, 16, 17, 18]])
    enc = {"input_ids": ids, "attention_mask": (ids != 0).long()}
    two = _check_matches_full_head(model, enc, 3, 4)
    assert two.abs().max() <= 0.5  # capped
    with torch.no_grad():  # Gemma scales inside its embedding module: inputs_embeds must not be scaled twice
        emb = embed_with_soft_tokens(model, ids, {})
        torch.testing.assert_close(yes_no_logits(model, None, enc["attention_mask"], 3, 4, inputs_embeds=emb), two,
                                   atol=1e-6, rtol=0)
    peft = add_lora(model, LoRAConfig(rank=2, dropout=0.0))
    randomize_lora(peft)
    _check_matches_full_head(peft, enc, 3, 4)


def test_answer_ids_must_differ(lm):
    _, tok, yes_id, no_id, _ = lm
    assert yes_id != no_id
    with pytest.raises(ValueError, match="distinct"):
        answer_token_ids(tok, yes=" maybe", no=" perhaps")  # both unknown words


def test_yes_no_loss_is_two_way_cross_entropy():
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    labels = torch.tensor([1, 0])
    ref = torch.nn.functional.cross_entropy(logits, 1 - labels)
    torch.testing.assert_close(yes_no_loss(logits, labels), ref)
