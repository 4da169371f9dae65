"""ReaEmb LM side on the tiny random Llama: thought passes, KV reuse, stage-1/2 math, resumable training."""

import math

import numpy as np
import pytest
import torch

from semcollab.config import ConfigError
from semcollab.lm import LoRAConfig, add_lora, body_hidden, load_causal_lm
from semcollab.methods.reaemb import (
    THOUGHT_TOKEN,
    ReaEmbConfig,
    ReaEmbEncoder,
    Stage1Config,
    Stage2Config,
    ThoughtAttention,
    clipped_policy_loss,
    co_occurrence_candidates,
    embedding_rms,
    gaussian_log_prob,
    generate_table,
    group_advantage,
    lrcl_loss,
    rank_reward,
    rotary,
    train_stage1,
    train_stage2,
)
from semcollab.train.lm_steps import LMTrainConfig

from ...lm_helpers import randomize_lora
from ...tolerance import assert_close_rounding, transformer_reductions

TEXTS = ["toy story", "golden eye of the war; love", "a", "space war; drama comedy; action thriller movie",
         "the love; of drama"]


def make_encoder(path, eos=True, seed=0, prompt="{text}"):
    model, tok = load_causal_lm(str(path))
    if eos:
        tok.add_special_tokens({"eos_token": "[SEP]"})  # in the vocabulary already: no resize
    torch.manual_seed(seed)
    return ReaEmbEncoder(model, tok, ReaEmbConfig(prompt=prompt))


@pytest.fixture
def encoder(tiny_causal_lm):
    return make_encoder(tiny_causal_lm).eval()


def test_inputs_end_with_thought_then_eos_and_are_left_padded(tiny_causal_lm):
    for eos in (True, False):
        enc = make_encoder(tiny_causal_lm, eos=eos)
        batch = enc.tokenize(TEXTS)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        tail = [enc.thought_id] + ([enc.tokenizer.eos_token_id] if eos else [])
        assert ids[:, -len(tail):].tolist() == [tail] * len(TEXTS)
        assert enc.tokenizer.convert_ids_to_tokens(enc.thought_id) == THOUGHT_TOKEN
        assert (mask[:, 0] == 0).any() and mask[:, -1].all()  # left padding, rows of different lengths
        assert len(set(mask.sum(1).tolist())) > 2


def test_thought_changes_the_item_embedding(encoder):
    batch = encoder.tokenize(TEXTS)
    with torch.no_grad():
        plain = encoder.embed(**batch, mode="plain")
        two = encoder.embed(**batch, mode="two_pass")
        assert (plain - two).abs().max() > 1e-3
        encoder.thought.v.weight.mul_(-2.0)
        two_b = encoder.embed(**batch, mode="two_pass")
        assert (two - two_b).abs().max() > 1e-3
        assert torch.equal(plain, encoder.embed(**batch, mode="plain"))  # plain has no thought


def test_plain_is_the_text_without_the_thought_token(encoder):
    batch = encoder.tokenize(TEXTS)
    rows = [[i for i in r if i != encoder.thought_id] for r in encoder.token_ids(TEXTS)]
    t = max(map(len, rows))
    ids = torch.tensor([[0] * (t - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (t - len(r)) + [1] * len(r) for r in rows])
    with torch.no_grad():
        hidden = body_hidden(encoder.lm, ids, mask)
        ref = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        assert_close_rounding(encoder.embed(**batch, mode="plain"), ref,
                              transformer_reductions(encoder.lm.config, ids.shape[1]))


@pytest.mark.parametrize("eos,lora", [(True, False), (False, False), (True, True)])
def test_kv_reuse_equals_two_pass(tiny_causal_lm, eos, lora):
    """The cached pass 2 equals the full one up to rounding: ``eps(float32) * sum of the reduction lengths of one
    forward pass * max|embedding|`` (tests/tolerance.py), about 6e-5 to 1.3e-4 here. Measured: about 1e-7 on an
    AMD EPYC (AVX-512, any oneDNN ISA, 1 or 2 threads), 1.04e-5 on an Intel Xeon with AMX (where a fixed 1e-5
    failed). A real fault exceeds it: tail positions off by one give 9e-4 to 2.2, the prefix cache of the wrong
    rows 0.4 to 1.2, no cache at all 0.5 to 1.3."""
    enc = make_encoder(tiny_causal_lm, eos=eos)
    if lora:
        enc.lm = add_lora(enc.lm, LoRAConfig(rank=2))
        randomize_lora(enc.lm)
    enc.eval()
    for texts in (TEXTS, TEXTS[1:3], TEXTS[::-1]):
        batch = enc.tokenize(texts)
        assert (batch["attention_mask"] == 0).any()
        with torch.no_grad():
            two = enc.embed(**batch, mode="two_pass")
            kv = enc.embed(**batch, mode="kv_reuse")
        assert_close_rounding(kv, two, transformer_reductions(enc.lm.config, batch["input_ids"].shape[1],
                                                              lora_rank=2 if lora else 0), f"texts {texts}")
        assert kv.dtype == torch.float32 and kv.shape == (len(texts), 32)


def test_one_prefix_serves_many_rollouts(encoder):
    """Stage 2 finishes several noisy thoughts on one prefix cache: each must equal a fresh full second pass."""
    encoder.eval()
    batch = encoder.tokenize(TEXTS)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        base = encoder.thought_vector(**batch)
        prefix = encoder.prefix_pass(**batch)
        length = prefix.cache.get_seq_length()
        for _ in range(3):
            thought = base + 0.5 * torch.randn(base.shape, generator=g)
            reused = encoder.finish(prefix, thought)
            assert prefix.cache.get_seq_length() == length  # cropped back to the prefix
            fresh = encoder.embed(**batch, mode="two_pass", thought=thought)
            assert_close_rounding(reused, fresh, transformer_reductions(encoder.lm.config, batch["input_ids"].shape[1]))


def test_kv_reuse_refuses_right_padding(encoder):
    rows = encoder.token_ids(TEXTS[:2])
    t = max(map(len, rows))
    ids = torch.tensor([r + [0] * (t - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (t - len(r)) for r in rows])
    with pytest.raises(ValueError, match="left-padded"):
        encoder.embed(ids, mask, "kv_reuse")
    with torch.no_grad():  # two_pass finds the thought token per row under any padding
        right = encoder.embed(ids, mask, "two_pass")
        left = encoder.embed_texts(TEXTS[:2], "two_pass")
    assert_close_rounding(right, left, transformer_reductions(encoder.lm.config, t))


def test_thought_vector_starts_on_the_embedding_scale(encoder):
    batch = encoder.tokenize(TEXTS)
    thought = encoder.thought_vector(**batch).detach()
    emb_norm = encoder.lm.get_input_embeddings().weight.norm(dim=-1).mean()
    assert torch.allclose(embedding_rms(encoder.lm).norm(), emb_norm, rtol=0.2)
    ratio = thought.norm(dim=-1) / emb_norm
    assert ((ratio > 0.7) & (ratio < 1.4)).all(), ratio


def test_rotary_is_relative_and_identity_at_zero():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 8, generator=g)
    dot = lambda p, s: (rotary(q, torch.tensor(p)) * rotary(k, torch.tensor(s))).sum()  # noqa: E731
    torch.testing.assert_close(dot(3, 1), dot(10, 8))
    assert not torch.allclose(dot(3, 1), dot(3, 2))
    torch.testing.assert_close(rotary(q, torch.tensor(0)), q)


def test_thought_attention_reads_only_earlier_real_positions():
    torch.manual_seed(0)
    att = ThoughtAttention(8, embed_scale=0.5)
    hidden = torch.randn(2, 6, 8)
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    pos = torch.tensor([4, 3])
    out = att(hidden, mask, pos)
    assert torch.allclose(out.pow(2).mean(-1).sqrt(), torch.full((2,), 0.5), atol=1e-4)  # starts at the gain
    later = hidden.clone()
    later[0, 4:], later[1, 3:], later[0, 0] = 9.0, 9.0, 9.0  # the thought, after it, and padding
    torch.testing.assert_close(att(later, mask, pos), out)
    earlier = hidden.clone()
    earlier[0, 1] += 1.0
    assert not torch.allclose(att(earlier, mask, pos)[0], out[0])
    poisoned = hidden.clone()
    poisoned[0, 0] = float("nan")  # a kernel's garbage at a padded position never reaches the thought
    torch.testing.assert_close(att(poisoned, mask, pos), out)


def test_reward_and_contrastive_loss_stay_float32_under_bf16_autocast():
    """On CUDA ``train_lm`` runs the loss under bf16 autocast; LM item embeddings are close to each other, so
    bf16 scores (8 bits of mantissa) would tie the candidates and flatten the reward. Hand case: the
    positive beats the other candidate by 1e-3 relative, which bf16 cannot see."""
    anchor = torch.tensor([[1.0, 1.0]])
    cands = torch.tensor([[[1.001, 1.0], [1.0, 1.0]]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = rank_reward(anchor, cands, 0)
        a, b, t = torch.randn(4, 8), torch.randn(4, 8), torch.tensor(0.0)
        in_bf16 = lrcl_loss(a, b, t)
    torch.testing.assert_close(got, torch.tensor([0.5]))  # rank 0; bf16 would have tied it to rank 1
    assert in_bf16.dtype == torch.float32
    torch.testing.assert_close(in_bf16, lrcl_loss(a, b, t))


def test_rank_reward_by_hand():
    anchor = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    cands = torch.tensor([[[2.0, 0], [3, 0], [1, 0], [0, 0]],  # positive scores 2, one above: rank 1
                          [[5.0, 0], [3, 0], [1, 0], [0, 0]],  # best: rank 0
                          [[3.0, 0], [3, 0], [1, 0], [4, 0]]])  # a tie counts against it: rank 2
    got = rank_reward(anchor, cands, 0)
    want = torch.tensor([1 / (1 + math.log2(3)), 0.5, 1 / (1 + math.log2(4))])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(rank_reward(anchor[:1], cands[:1], torch.tensor([3])), torch.tensor([1 / (1 + math.log2(5))]))


def test_group_advantage_by_hand():
    rewards = torch.tensor([[0.5, 0.3], [0.2, 0.4]])
    adv = group_advantage(rewards, rewards[:, 0])  # baseline mean 0.35
    torch.testing.assert_close(adv, torch.tensor([[0.15, -0.05], [-0.15, 0.05]]))
    norm = math.sqrt(2 * 0.15**2 + 2 * 0.05**2)
    torch.testing.assert_close(group_advantage(rewards, rewards[:, 0], l2_normalize=True),
                               torch.tensor([[0.15, -0.05], [-0.15, 0.05]]) / (norm + 1e-6))


def test_clipped_policy_loss_by_hand():
    old = torch.zeros(4)
    new = torch.log(torch.tensor([1.5, 0.5, 0.5, 1.1])).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, 1.0, 2.0])
    loss = clipped_policy_loss(new, old, adv, 0.2, 0.28)
    # min(r A, clip(r) A): 1.28 (clipped high), -0.8 (clipped low), 0.5, 2.2 -> mean 0.795
    torch.testing.assert_close(loss, torch.tensor(-(1.28 - 0.8 + 0.5 + 2.2) / 4))
    loss.backward()
    grad = new.grad
    assert grad[0] == 0 and grad[1] == 0  # clipped terms give no gradient
    torch.testing.assert_close(grad[2:], torch.tensor([-0.5 * 1.0 / 4, -1.1 * 2.0 / 4]))


def test_gaussian_log_prob_by_hand():
    mean = torch.tensor([[0.0, 1.0]])
    sample = torch.tensor([[0.5, 1.0]])
    want = -0.5 * 1.0 - 2 * math.log(0.5) - math.log(2 * math.pi)  # z = (1, 0), d = 2, sigma = .5
    torch.testing.assert_close(gaussian_log_prob(sample, mean, 0.5), torch.tensor([want]))
    torch.testing.assert_close(gaussian_log_prob(sample, mean, torch.tensor([[0.5]])), torch.tensor([want]))


def test_lrcl_loss_two_by_two_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    zero = torch.tensor(0.0)  # tau = 1
    # logits A B^T = [[1, 1], [0, 1]]; rows of logits: log2, log(1+e^-1); of logits^T: log(1+e^-1), log2
    hard = (math.log(2) + math.log(1 + math.exp(-1))) / 2
    torch.testing.assert_close(lrcl_loss(a, b, zero, soft_targets=False), torch.tensor(hard))
    # soft targets softmax(([[1,0],[0,1]] + [[1,1],[1,2]]) / 2) = softmax([[1, .5], [.5, 1.5]]) (symmetric)
    t0 = 1 / (1 + math.exp(-0.5))  # row 0: [t0, 1 - t0]
    t1 = 1 / (1 + math.exp(-1.0))  # row 1: [1 - t1, t1]
    ls = lambda x, y: (x - math.log(math.exp(x) + math.exp(y)), y - math.log(math.exp(x) + math.exp(y)))  # noqa: E731
    r0, r1 = ls(1, 1), ls(0, 1)  # log-softmax rows of the logits
    c0, c1 = ls(1, 0), ls(1, 1)  # of the transposed logits
    la = [-(t0 * r0[0] + (1 - t0) * r0[1]), -((1 - t1) * r1[0] + t1 * r1[1])]
    lb = [-(t0 * c0[0] + (1 - t1) * c0[1]), -((1 - t0) * c1[0] + t1 * c1[1])]
    soft = (la[0] + lb[0] + la[1] + lb[1]) / 4
    torch.testing.assert_close(lrcl_loss(a, b, zero, soft_targets=True), torch.tensor(soft))


def test_lrcl_loss_equal_views_at_low_temperature_near_minimum():
    emb = torch.eye(4) * 2
    low = torch.tensor(math.log(0.05))
    for soft in (True, False):
        assert lrcl_loss(emb, emb.clone(), low, soft_targets=soft) < 1e-3
        assert lrcl_loss(emb, emb.roll(1, 0), low, soft_targets=soft) > 10
    # the temperature is learnable: its gradient is defined, and it is clamped
    t = torch.tensor(math.log(1e-6), requires_grad=True)
    lrcl_loss(emb, emb.roll(1, 0), t, soft_targets=False, temp_min=1e-3).backward()
    assert t.grad == 0  # clamped at temp_min


def test_co_occurrence_candidates_by_hand():
    seqs = [[1, 2, 3], [1, 2], [4], [2, 1, 1]]
    c = co_occurrence_candidates(seqs, n_items=8, n_random=3, rng=0)
    assert c.anchors.tolist() == [1, 2, 3] and c.no_cooccurrence == 5  # 4 is alone; 5..8 never seen
    assert c.candidates[:, 0].tolist() == [2, 1, 1]  # 1-2 share 3 users; 3's tie (1 and 2, one user each) -> 1
    for anchor, row in zip(c.anchors, c.candidates):
        neg = set(row[1:].tolist())
        assert len(neg) == 3 and not neg & {1, 2, 3} and anchor not in neg
    again = co_occurrence_candidates(seqs, n_items=8, n_random=3, rng=0)
    assert np.array_equal(again.candidates, c.candidates) and c.fallback_negatives == 0
    tight = co_occurrence_candidates(seqs, n_items=5, n_random=3, rng=0)  # only 4, 5 never co-occur with 1
    assert tight.fallback_negatives == 3
    assert all(r[0] not in r[1:] and a not in r for a, r in zip(tight.anchors, tight.candidates))


ATTR_TEXTS = ["title is toy story; category is comedy; year is 1995", "title is golden eye; category is action",
              "title is space war; category is drama; year is 1995", "title is love; category is drama",
              "title is the war; category is thriller; year is 1995", "title is a movie"]


def _stage1(path, ckpt=None, **train_kw):
    enc = make_encoder(path, eos=True, seed=1)
    # the LM loop's own defaults (no step cap, checkpoints only when stopping), as before the stage settings merged
    cfg = Stage1Config(**{"epochs": 2, "batch_size": 2, "lr": 1e-2, "warmup_ratio": 0.0, "max_steps": None,
                          "checkpoint_every": 0, "lora_rank": 2, "lora_alpha": 4.0, "lora_dropout": 0.1, **train_kw})
    res = train_stage1(enc, ATTR_TEXTS, cfg, checkpoint_dir=ckpt, log=None, seed=3, progress=False)
    params = {n: p.detach().clone() for n, p in enc.named_parameters() if p.requires_grad}
    return res, params


def test_stage1_resume_is_exact(tiny_causal_lm, tmp_path):
    init = {n: p.detach().clone() for n, p in make_encoder(tiny_causal_lm, seed=1).named_parameters()}
    full, p_full = _stage1(tiny_causal_lm)
    assert full.finished and full.steps == 6 and len(set(full.losses)) == 6
    assert any("lora_B" in n for n in p_full) and "log_temp" in p_full and "thought.gain" in p_full
    assert not torch.equal(p_full["thought.v.weight"], init["thought.v.weight"])
    assert not torch.equal(p_full["log_temp"], init["log_temp"])
    calls = 0
    while True:  # a tiny time cap stops after every step; each rerun continues where the last stopped
        res, p = _stage1(tiny_causal_lm, tmp_path / "ck", max_minutes=1e-9)
        calls += 1
        if res.finished:
            break
        assert res.stopped_by == "max_minutes"
    assert calls == full.steps and res.losses == full.losses
    assert p.keys() == p_full.keys()
    for k in p_full:
        assert torch.equal(p[k], p_full[k]), k


def _stage2(path, ckpt=None, should_stop=None):
    enc = make_encoder(path, eos=True, seed=1)
    enc.lm = add_lora(enc.lm, LoRAConfig(rank=2))
    randomize_lora(enc.lm)
    lm_before = {n.replace(".base_layer", ""): p.detach().clone()
                 for n, p in enc.lm.get_base_model().named_parameters() if "lora_" not in n}
    seqs = [[1, 2, 3], [2, 4], [3, 5, 6], [4, 6], [1, 6]]
    cands = co_occurrence_candidates(seqs, n_items=len(ATTR_TEXTS), n_random=3, rng=0)
    cfg = Stage2Config(rollouts=3, batch_size=2, epochs=1, lr=1e-2, warmup_ratio=0.0, max_steps=None,
                       checkpoint_every=0)
    res = train_stage2(enc, ATTR_TEXTS, cands, cfg, checkpoint_dir=ckpt, log=None, should_stop=should_stop, seed=0,
                       progress=False)
    return enc, res, lm_before


def test_stage2_trains_only_the_thought_module_and_resumes(tiny_causal_lm, tmp_path):
    enc, res, lm_before = _stage2(tiny_causal_lm)
    assert res.train.finished and res.train.steps == 3 and res.anchors == 6 and res.no_cooccurrence == 0
    assert all(1 / (1 + math.log2(5)) <= r <= 0.5 for r in res.rewards)
    assert not any(p.requires_grad for p in enc.lm.parameters()) and not hasattr(enc.lm, "peft_config")
    merged = dict(enc.lm.named_parameters())
    changed = [n for n, p in lm_before.items() if not torch.equal(merged[n], p)]
    assert changed and all("proj" in n for n in changed)  # LoRA was merged into the projections, nothing else moved
    full = {n: p.detach().clone() for n, p in enc.thought.named_parameters()}
    init = make_encoder(tiny_causal_lm, seed=1)
    assert not torch.equal(full["o.weight"], init.thought.o.weight)
    _, first, _ = _stage2(tiny_causal_lm, tmp_path / "ck", should_stop=lambda s: s == 2)
    assert first.train.stopped_by == "stop_requested"
    enc2, second, _ = _stage2(tiny_causal_lm, tmp_path / "ck")
    assert second.train.resumed_from_step == 2 and second.train.losses == res.train.losses
    for n, p in enc2.thought.named_parameters():
        assert torch.equal(p, full[n]), n


def test_generate_table_keeps_input_order(encoder):
    table = generate_table(encoder, TEXTS, batch_size=2)
    assert table.shape == (len(TEXTS), 32) and table.dtype == np.float32
    with torch.no_grad():
        single = np.stack([encoder.embed_texts([t], "two_pass")[0].numpy() for t in TEXTS])
    reductions = transformer_reductions(encoder.lm.config, encoder.tokenize(TEXTS)["input_ids"].shape[1])
    assert_close_rounding(table, single, reductions, "batched vs one text")
    assert_close_rounding(generate_table(encoder, TEXTS, mode="two_pass", batch_size=3), table, reductions)
    assert generate_table(encoder, [], batch_size=2).shape == (0, 32)


def test_configs_validate():
    with pytest.raises(ConfigError, match="view_drop"):
        Stage1Config(view_drop=1.5).validate()
    with pytest.raises(ConfigError, match="temp_min"):
        train_stage1(None, ATTR_TEXTS, Stage1Config(), temp_min=5.0, temp_max=1.0)
    with pytest.raises(ConfigError, match="noise_units"):
        Stage2Config(noise_units="percent").validate()
    with pytest.raises(ConfigError, match="rollouts"):
        Stage2Config(rollouts=1).validate()
    with pytest.raises(ConfigError, match="prompt"):
        ReaEmbConfig(prompt="no slot").validate()
    with pytest.raises(ConfigError, match="'lr'"):
        Stage2Config(lr=0).validate()
    with pytest.raises(ConfigError, match="candidate_mode"):
        train_stage2(None, ATTR_TEXTS, None, Stage2Config(), candidate_mode="three_pass")
    with pytest.raises(ConfigError, match="LMTrainConfig.lr"):
        LMTrainConfig(lr=0).validate()


def test_freeze_lm_merges_only_over_float32_weights(tiny_causal_lm):
    """bfloat16 weights would round a small LoRA update away: the adapter stays, frozen, and gives the same
    embeddings as before freezing; over float32 weights the merge gives them too."""
    from semcollab.methods.reaemb import freeze_lm

    for dtype, merged in ((torch.float32, True), (torch.bfloat16, False)):
        enc = make_encoder(tiny_causal_lm, seed=1)
        enc.lm = add_lora(enc.lm.to(dtype), LoRAConfig(rank=2))
        randomize_lora(enc.lm)
        batch = enc.tokenize(TEXTS)
        enc.eval()
        with torch.no_grad():
            before = enc.embed(**batch, mode="two_pass")
        freeze_lm(enc)
        assert hasattr(enc.lm, "peft_config") is not merged
        assert not any(p.requires_grad for p in enc.lm.parameters()) and not enc.lm.training
        with torch.no_grad():
            after = enc.embed(**batch, mode="two_pass")
            cached = enc.embed(**batch, mode="kv_reuse")  # the table's path works on the unmerged adapter too
        if merged:  # W + BA rounded once into W: the adapter's reductions on top of the model's (tests/tolerance.py)
            reductions = transformer_reductions(enc.lm.config, batch["input_ids"].shape[1], lora_rank=2)
            assert_close_rounding(after, before, reductions, "merged vs adapter")
            assert_close_rounding(cached, after, reductions, "kv_reuse vs two_pass")
        else:  # the adapter stays: the same kernels as before; bfloat16 states round each op's output once,
            # reductions accumulate in float32, so about one bfloat16 eps per op (12 per layer and the pooling)
            torch.testing.assert_close(after, before, atol=0.0, rtol=0.0)
            assert_close_rounding(cached, after, [1] * 14, "kv_reuse vs two_pass", dtype=torch.bfloat16)
