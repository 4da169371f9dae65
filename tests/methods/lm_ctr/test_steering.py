import copy
import math

import pytest
import torch

from semcollab.lm import (
    ITEM_TOKEN,
    USER_TOKEN,
    LoRAConfig,
    add_lora,
    embed_with_soft_tokens,
    position_ids_from_mask,
    yes_no_logits,
)
from semcollab.methods.lm_ctr.steering import STEER_ATTENTION, install_attention_control, steering_schedule

from ...lm_helpers import randomize_lora
from ...tolerance import assert_close_rounding, transformer_reductions

FAMILIES = ["llama", "qwen2", "gemma3"]
PAD, USER, ITEM = 0, 3, 4  # token ids in the in-memory models
KINDS = ("user", "item")


def tiny(family):
    """A tiny random causal LM built in memory (GQA: 4 query heads, 2 KV heads); Gemma 3 mixes sliding
    (window 4, shorter than the prompts) and full layers."""
    pytest.importorskip("transformers")
    import transformers as tf

    torch.manual_seed(0)
    common = dict(vocab_size=40, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=64, pad_token_id=PAD)
    if family == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(num_hidden_layers=2, **common))
    elif family == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(num_hidden_layers=3, **common))
    else:
        model = tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(
            num_hidden_layers=3, head_dim=8, sliding_window=4, attn_logit_softcapping=30.0,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"], **common))
    return model.eval()


def batch(right_pad=False):
    """3 rows of 10 tokens, padded (left by default), USER at column 4 or 5 and ITEM at 7 of each padded row."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 40, (3, 10), generator=g)
    ids[:, 5], ids[:, 7], ids[2, 4], ids[2, 5] = USER, ITEM, USER, 9
    ids[0, :3], ids[1, :1] = PAD, PAD
    if right_pad:  # the same rows, padding moved to the end
        ids = torch.stack([torch.cat([r[r != PAD], r[r == PAD]]) for r in ids])
    mask = (ids != PAD).long()
    keys = {"user": ids == USER, "item": ids == ITEM}
    return ids, mask, keys


def soft_vectors(seed, scale=5.0):
    g = torch.Generator().manual_seed(seed)
    return {USER: torch.randn(3, 32, generator=g) * scale, ITEM: torch.randn(3, 32, generator=g) * scale}


def forward(model, ids, mask, soft=None, **kw):
    emb = embed_with_soft_tokens(model, ids, soft or {})
    return model(inputs_embeds=emb, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=False,
                 **kw)


def switched(model, impl):
    other = copy.deepcopy(model)
    other.set_attn_implementation(impl)
    assert other.config._attn_implementation == impl
    return other


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_bias_is_exactly_eager_and_close_to_sdpa(family):
    model = tiny(family)
    eager, sdpa = switched(model, "eager"), switched(model, "sdpa")
    control = install_attention_control(model)
    assert install_attention_control(model) is control
    assert model.config._attn_implementation == STEER_ATTENTION
    n = model.config.num_hidden_layers
    assert control.n_layers == n
    ids, mask, keys = batch()
    soft = soft_vectors(1)
    control.set_keys(keys)
    control.set_bias(steering_schedule(n, "neutral"))
    with torch.no_grad():
        ref = forward(eager, ids, mask, soft).logits
        with control.recording() as rec:  # recording reads the probabilities, it does not change them
            out = forward(model, ids, mask, soft).logits
        assert torch.equal(out, ref)
        assert rec.answer.shape == (n, 3, 4, 2)  # every layer dispatched to the registered function
        control.set_bias(None)
        assert torch.equal(forward(model, ids, mask, soft).logits, ref)
        control.set_keys(None)
        control.set_bias([1.0] * n)  # a bias without keys steers nothing
        assert torch.equal(forward(model, ids, mask, soft).logits, ref)
        real = mask.bool()  # sdpa and eager differ on fully masked (pad) rows only, and by rounding elsewhere
        assert_close_rounding(forward(sdpa, ids, mask, soft).logits[real], out[real],
                              transformer_reductions(model.config, ids.shape[1], pooled=False, head=True), "sdpa")


@pytest.mark.parametrize("family", FAMILIES)
def test_minus_inf_bias_cuts_the_soft_tokens_off(family):
    model = tiny(family)
    control = install_attention_control(model)
    ids, mask, keys = batch()
    control.set_keys(keys)
    a, b = soft_vectors(1), soft_vectors(2, scale=-20.0)
    with torch.no_grad():
        la, lb = forward(model, ids, mask, a).logits, forward(model, ids, mask, b).logits
        assert ((la[:, -1] - lb[:, -1]).abs().amax(-1) > 1e-3).all()  # every answer row sees the soft vectors
        control.set_bias([-math.inf] * control.n_layers)
        la, lb = forward(model, ids, mask, a).logits, forward(model, ids, mask, b).logits
        assert torch.equal(la[:, -1], lb[:, -1])
        assert torch.isfinite(la).all()
        # blocking only the user keys: the item vectors still matter
        control.set_keys({"user": keys["user"]})
        la2 = forward(model, ids, mask, a).logits
        assert not torch.equal(la2[:, -1], forward(model, ids, mask, {USER: a[USER], ITEM: b[ITEM]}).logits[:, -1])
        assert torch.equal(la2[:, -1], forward(model, ids, mask, {USER: b[USER], ITEM: a[ITEM]}).logits[:, -1])


def _expected(attentions, keys, answer_index, text_queries):
    """Masses from full (B, H, T, T) probabilities: per layer, (answer (B, H, K), text (B, H, K), total (B, H))."""
    kinds = torch.stack([keys[k] for k in KINDS], 1).float()  # (B, K, T)
    rows = torch.arange(len(answer_index))
    out = []
    for att in attentions:
        per_query = torch.einsum("bhqt,bkt->bhqk", att.double(), kinds.double())  # (B, H, T, K)
        answer = per_query[rows, :, answer_index]
        tq = text_queries.double()
        text = torch.einsum("bhqk,bq->bhk", per_query, tq) / tq.sum(1)[:, None, None]
        out.append((answer, text, att[rows, :, answer_index].double().sum(-1)))
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("right_pad", [False, True])
def test_recorded_masses_match_the_attention_probabilities(family, right_pad):
    model = tiny(family)
    eager = switched(model, "eager")
    control = install_attention_control(model)
    ids, mask, keys = batch(right_pad)
    text = mask.bool() & ~keys["user"] & ~keys["item"]
    text[2] = False  # a row without text queries -> NaN
    soft = soft_vectors(1)
    answer_index = mask.shape[1] - 1 - mask.flip(1).argmax(1)
    assert (answer_index == mask.shape[1] - 1).all() != right_pad
    control.set_keys(keys)
    with torch.no_grad():
        att = forward(eager, ids, mask, soft, output_attentions=True).attentions
        with control.recording(text_queries=text) as rec:
            forward(model, ids, mask, soft)
    assert rec.kinds == list(KINDS)
    n = control.n_layers
    assert rec.answer.shape == rec.text.shape == (n, 3, 4, 2) and rec.total_answer.shape == (n, 3, 4)
    # the recorded masses sum float32 probabilities over keys (and average over queries) where _expected sums the
    # same eager probabilities in float64: a reduction over the row length each, probabilities at most 1
    t, f32 = ids.shape[1], torch.float32
    for layer, (answer, txt, total) in enumerate(_expected(att, keys, answer_index, text)):
        assert_close_rounding(rec.answer[layer], answer, [t], f"answer mass, layer {layer}", dtype=f32, scale=1.0)
        assert_close_rounding(rec.text[layer, :2], txt[:2], [t, t], f"text mass, layer {layer}", dtype=f32, scale=1.0)
        assert_close_rounding(rec.total_answer[layer], total, [t], f"total mass, layer {layer}", dtype=f32, scale=1.0)
    assert rec.text[:, 2].isnan().all() and not rec.text[:, :2].isnan().any()
    # a softmax row sums to 1 up to its normaliser's and this sum's rounding
    assert_close_rounding(rec.total_answer, torch.ones_like(rec.total_answer), [t, t], "sum of probabilities")
    if family == "gemma3":  # sliding window 4: the answer cannot see the user key (5+ back) on sliding layers
        assert (rec.answer[[0, 2], :, :, 0] == 0).all() and (rec.answer[1, :, :, 0] > 0).all()
    # per-kind query masks: kind k averaged over its own queries only (here: user over `text`, item over a
    # different subset), each equal to the single-mask result for that mask
    other = text.clone()
    other[:, : mask.shape[1] // 2] = False
    with torch.no_grad(), control.recording(text_queries=torch.stack([text, other], 1)) as rec3:
        forward(model, ids, mask, soft)
    with torch.no_grad(), control.recording(text_queries=other) as rec4:
        forward(model, ids, mask, soft)
    for got, want in ((rec3.text[..., 0], rec.text[..., 0]), (rec3.text[..., 1], rec4.text[..., 1])):
        assert torch.equal(got.isnan(), want.isnan())  # the same rows without text queries
        assert_close_rounding(got.nan_to_num(), want.nan_to_num(), [t, t], "per-kind query mask", scale=1.0)
    with pytest.raises(ValueError, match="per-kind masks"):
        with control.recording(text_queries=torch.stack([text, other, text], 1)):
            pass
    # an explicit answer index gives the same as the one read off the mask
    with torch.no_grad(), control.recording(answer_index=answer_index) as rec2:
        forward(model, ids, mask, soft)
    assert rec2.text is None
    torch.testing.assert_close(rec2.answer, rec.answer, atol=0, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_bias_moves_recorded_attention_as_configured(family):
    model = tiny(family)
    control = install_attention_control(model)
    ids, mask, keys = batch()
    soft = soft_vectors(1)
    control.set_keys(keys)
    n = control.n_layers

    def collab_mass(bias):
        control.set_bias(bias)
        with torch.no_grad(), control.recording(text_queries=mask.bool()) as rec:
            forward(model, ids, mask, soft)
        return rec.answer.sum(-1), rec.text.sum(-1)  # (n, B, H) mass on any collaborative key

    base_answer, base_text = collab_mass(None)
    for layer in (0, n - 1):  # the layers before it are unchanged, so its inputs are the same as in the base run
        for sign in (1.0, -1.0):
            bias = [0.0] * n
            bias[layer] = 2.0 * sign
            answer, text = collab_mass(bias)
            assert (sign * (answer[layer] - base_answer[layer]) > 0).all()
            assert (sign * (text[layer] - base_text[layer]) > 0).all()
            torch.testing.assert_close(answer[:layer], base_answer[:layer], atol=0, rtol=0)
    # the default schedule: suppressed shallow layers hold less mass, the enhanced deepest layer more
    sched = steering_schedule(n, magnitude=3.0, shallow=0.34, deep=0.34)
    assert sched[0] < 0 < sched[-1]
    answer, _ = collab_mass(sched)
    assert (answer[0] < base_answer[0]).all()
    assert answer[-1].mean() > base_answer[-1].mean()


def test_steering_schedule_values_and_errors():
    assert steering_schedule(10) == [-1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0]
    assert steering_schedule(18) == [-1.0] * 5 + [0.0] * 9 + [0.25, 0.5, 0.75, 1.0]
    assert steering_schedule(10, magnitude=2.0, shallow=0.1, deep=0.4) == [-2.0] + [0.0] * 5 + [0.5, 1.0, 1.5, 2.0]
    assert steering_schedule(4, shallow=0.0, deep=0.0) == [0.0] * 4
    assert steering_schedule(3, shallow=1.0, deep=0.0) == [-1.0] * 3
    assert steering_schedule(5, "neutral") == [0.0] * 5
    assert steering_schedule(3, "enhance", 0.5) == [0.5] * 3
    assert steering_schedule(3, "suppress", 2) == [-2.0] * 3
    assert steering_schedule(2, "suppress", math.inf) == [-math.inf] * 2
    assert steering_schedule(3, shallow=0.5, deep=0.5) == [-1.0, -1.0, 1.0]  # rounded parts may not overlap
    with pytest.raises(ValueError, match="unknown steering schedule 'boost'.*suppress-neutral-enhance.*neutral"):
        steering_schedule(10, "boost")
    for kw, match in [({"shallow": 1.5}, "shallow"), ({"deep": -0.1}, "deep"), ({"shallow": 0.7, "deep": 0.4}, r"shallow \+ deep"),
                      ({"magnitude": -1.0}, "magnitude"), ({"magnitude": math.nan}, "magnitude"),
                      ({"kind": "enhance", "magnitude": math.inf}, "inf")]:
        with pytest.raises(ValueError, match=match):
            steering_schedule(10, **kw)
    for n in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="n_layers"):
            steering_schedule(n)


def test_control_validates_its_inputs():
    model = tiny("llama")
    control = install_attention_control(model)
    ids, mask, keys = batch()
    with pytest.raises(ValueError, match="2 attention layers"):
        control.set_bias([1.0])
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        control.set_bias([0.0, math.inf])
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        control.set_bias(torch.tensor([math.nan, 0.0]))
    control.set_bias(torch.tensor([-math.inf, 1.0]))
    assert control.bias == [-math.inf, 1.0] and not control.steering  # no keys yet
    with pytest.raises(ValueError, match="bool"):
        control.set_keys({"user": keys["user"].float()})
    with pytest.raises(ValueError, match="differ in shape"):
        control.set_keys({"user": keys["user"], "item": keys["item"][:, :5]})
    control.set_keys({"user": keys["user"][:, :8]})  # keys for another batch
    with pytest.raises(ValueError, match="set_keys for the current batch"), torch.no_grad():
        forward(model, ids, mask)
    control.set_keys(keys)
    with pytest.raises(ValueError, match="text_queries has shape"), torch.no_grad():
        with control.recording(text_queries=mask[:2].bool()):
            forward(model, ids, mask)
    with control.recording(), pytest.raises(RuntimeError, match="nest"):
        with control.recording():
            pass


def test_lora_gradients_flow_with_steering(lm):
    model, tok, yes_id, no_id, ids = lm
    peft = add_lora(model, LoRAConfig(rank=2, dropout=0.0))
    randomize_lora(peft)
    control = install_attention_control(peft)
    assert install_attention_control(model) is control  # the same inner model
    enc = tok([f"toy story {USER_TOKEN} drama {ITEM_TOKEN} movie", f"{USER_TOKEN} action {ITEM_TOKEN}"],
              padding=True, return_tensors="pt")
    control.set_keys({"user": enc["input_ids"] == ids[USER_TOKEN], "item": enc["input_ids"] == ids[ITEM_TOKEN]})
    d = model.config.hidden_size
    user = (torch.randn(2, d) * 3).requires_grad_()
    item = torch.randn(2, d) * 3

    def logits():
        emb = embed_with_soft_tokens(peft, enc["input_ids"], {ids[USER_TOKEN]: user, ids[ITEM_TOKEN]: item})
        return yes_no_logits(peft, None, enc["attention_mask"], yes_id, no_id, inputs_embeds=emb)

    with torch.no_grad():
        plain = logits()
    control.set_bias([1.5])
    steered = logits()
    assert not torch.allclose(steered, plain)
    steered.sum().backward()
    lora = [p for n, p in peft.named_parameters() if "lora_" in n]
    assert lora and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
    assert user.grad is not None and user.grad.abs().sum() > 0
    user.grad = None
    control.set_bias([-math.inf])  # blocked: the soft vector gets exactly zero gradient
    logits().sum().backward()
    assert user.grad is not None and (user.grad == 0).all()


def test_gradient_checkpointing_sees_the_same_steering(lm):
    model, tok, yes_id, no_id, ids = lm
    peft = add_lora(model, LoRAConfig(rank=2, dropout=0.0))
    randomize_lora(peft)
    control = install_attention_control(peft)
    enc = tok([f"toy {USER_TOKEN} drama", f"{USER_TOKEN} action"], padding=True, return_tensors="pt")
    control.set_keys({"user": enc["input_ids"] == ids[USER_TOKEN]})
    control.set_bias([2.0])
    vec = (torch.randn(2, model.config.hidden_size) * 3).requires_grad_()

    def grads():
        vec.grad = None
        emb = embed_with_soft_tokens(peft, enc["input_ids"], {ids[USER_TOKEN]: vec})
        with control.recording() as rec:
            yes_no_logits(peft, None, enc["attention_mask"], yes_id, no_id, inputs_embeds=emb).sum().backward()
        return vec.grad.clone(), rec

    peft.train()
    plain, _ = grads()
    base = peft.get_base_model()
    if hasattr(base, "activation_checkpointing_enable"):  # the transformers 5 name
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ckpt, rec = grads()
    # the recomputed forward runs the same kernels; the backward may sum the gradient in another order: up to a
    # forward and a backward pass of rounding (tests/tolerance.py)
    t = enc["input_ids"].shape[1]
    assert_close_rounding(ckpt, plain, 2 * transformer_reductions(model.config, t, lora_rank=2, head=True))
    assert rec.answer.shape == (1, 2, 2, 1)  # the recompute during backward is not recorded twice
