import math

import pytest
import torch

from semcollab.lm import (
    USER_TOKEN,
    LoRAConfig,
    add_lora,
    embed_with_soft_tokens,
    length_bucketed_batches,
    longest_first_batches,
    yes_no_logits,
    yes_no_loss,
)
from semcollab.train.lm_steps import LMTrainConfig, train_lm

from ..lm_helpers import prepare_lm

WORDS = ["toy", "story", "drama", "comedy", "action", "space", "war", "love", "golden", "eye"]


def _rows(n=13):
    rows = []
    for i in range(n):
        words = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(1 + i % 4))
        rows.append({"text": f"{words} {USER_TOKEN} . title :", "user": i % 3, "label": i % 2})
    return rows


def _setup(tiny_causal_lm):
    """A LoRA LM plus a user table and projection feeding a soft token, built the same way every call."""
    model, tok, yes_id, no_id, ids = prepare_lm(tiny_causal_lm)
    torch.manual_seed(0)
    peft = add_lora(model, LoRAConfig(rank=2, dropout=0.1))  # dropout: resume must restore the RNG
    users = torch.nn.Embedding(3, 8)
    proj = torch.nn.Linear(8, model.config.hidden_size)
    rows = _rows()
    lengths = [len(tok(r["text"])["input_ids"]) for r in rows]

    def collate(batch):
        enc = tok([r["text"] for r in batch], padding=True, return_tensors="pt")
        return {**enc, "user": torch.tensor([r["user"] for r in batch]), "label": torch.tensor([r["label"] for r in batch])}

    def loss_fn(b):
        emb = embed_with_soft_tokens(peft, b["input_ids"], {ids[USER_TOKEN]: proj(users(b["user"]))})
        return yes_no_loss(yes_no_logits(peft, None, b["attention_mask"], yes_id, no_id, inputs_embeds=emb), b["label"])

    trainable = {"lm": peft, "users": users, "proj": proj}
    return trainable, rows, lengths, collate, loss_fn


def _params(trainable):
    return {f"{k}.{n}": p.detach().clone() for k, m in trainable.items() for n, p in m.named_parameters() if p.requires_grad}


CFG = dict(epochs=2, batch_size=2, grad_accum=2, lr=1e-2, warmup_ratio=0.2, seed=3, progress=False)


def _run(tiny_causal_lm, ckpt=None, **kw):
    trainable, rows, lengths, collate, loss_fn = _setup(tiny_causal_lm)
    cfg = LMTrainConfig(**{**CFG, **kw.pop("cfg", {})})
    res = train_lm(loss_fn, trainable, rows, lengths, collate, cfg, checkpoint_dir=ckpt, log=None, **kw)
    return res, _params(trainable)


def test_resume_is_exact(tiny_causal_lm, tmp_path):
    full, p_full = _run(tiny_causal_lm)
    # 13 rows, batches of 2 -> 7 batches, groups of 2 (the last of 1) -> 4 steps per epoch, 8 in all
    assert full.steps == full.total_steps == 8 and full.stopped_by == "finished" and len(full.losses) == 8
    assert len(set(full.losses)) == 8
    first, _ = _run(tiny_causal_lm, tmp_path / "ck", should_stop=lambda s: s == 6)  # stops mid-epoch 2
    assert first.stopped_by == "stop_requested" and first.steps == 6 and first.losses == full.losses[:6]
    second, p_resumed = _run(tiny_causal_lm, tmp_path / "ck")
    assert second.resumed_from_step == 6 and second.finished and second.steps == 8
    assert second.losses == full.losses
    assert p_full.keys() == p_resumed.keys() and any("lora_" in k for k in p_full) and "proj.weight" in p_full
    for k in p_full:
        assert torch.equal(p_full[k], p_resumed[k]), k
    # a finished run is not retrained; its final parameters are loaded into fresh modules
    again, p_again = _run(tiny_causal_lm, tmp_path / "ck")
    assert again.stopped_by == "already_finished" and again.tokens == 0
    for k in p_full:
        assert torch.equal(p_full[k], p_again[k]), k


def test_time_cap_checkpoints_and_resumes(tiny_causal_lm, tmp_path):
    full, p_full = _run(tiny_causal_lm)
    calls = 0
    while True:  # a tiny cap stops after every step; each rerun continues where the last stopped
        res, p = _run(tiny_causal_lm, tmp_path / "ck", cfg={"max_minutes": 1e-9})
        calls += 1
        if res.finished:
            break
        assert res.stopped_by == "max_minutes"
    assert calls == full.steps == 8 and res.losses == full.losses
    assert all(torch.equal(p_full[k], p[k]) for k in p_full)


def test_changed_settings_refuse_checkpoint(tiny_causal_lm, tmp_path):
    _run(tiny_causal_lm, tmp_path / "ck", should_stop=lambda s: True)
    with pytest.raises(ValueError, match="config"):
        _run(tiny_causal_lm, tmp_path / "ck", cfg={"lr": 1e-3})


@pytest.mark.parametrize("kw,key", [({"epochs": 0}, "epochs"), ({"batch_size": -1}, "batch_size"),
                                    ({"grad_accum": 0}, "grad_accum"), ({"lr": 0}, "lr"),
                                    ({"warmup_ratio": 1.5}, "warmup_ratio"), ({"schedule": "step"}, "schedule"),
                                    ({"max_grad_norm": 0}, "max_grad_norm"), ({"max_minutes": -1}, "max_minutes"),
                                    ({"checkpoint_every": -1}, "checkpoint_every"), ({"device": "gpu"}, "device"),
                                    ({"weight_decay": -0.1}, "weight_decay"), ({"max_steps": 0}, "max_steps")])
def test_config_errors_name_key(kw, key):
    with pytest.raises(ValueError, match=f"LMTrainConfig.{key}'"):
        LMTrainConfig(**kw).validate()


def test_nothing_trainable_is_an_error():
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        train_lm(lambda b: b, [frozen], [1], [1], list, LMTrainConfig(progress=False), log=None)


def _two_entries():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    return {"a": a, "b": b}


def _one_step(trainable, ckpt=None, epochs=1, **kw):
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    cfg = LMTrainConfig(epochs=epochs, batch_size=4, lr=1e-2, warmup_ratio=0.0, weight_decay=0.0, progress=False)
    return train_lm(lambda rows: (trainable["a"](x[rows]) ** 2).sum() + (trainable["b"](x[rows]) ** 2).sum(),
                    trainable, list(range(4)), [1] * 4, torch.tensor, cfg, checkpoint_dir=ckpt, log=None, **kw)


def test_lr_scale_trains_an_entry_at_its_own_rate():
    trainable = _two_entries()
    before = {(k, n): p.detach().clone() for k, m in trainable.items() for n, p in m.named_parameters()}
    _one_step(trainable, lr_scale={"b": 0.1})
    # Adam's first step moves every weight and bias by lr (its update is g / |g|): 1e-2 for a, 1e-3 for b
    for (k, n), p0 in before.items():
        moved = (getattr(trainable[k], n).detach() - p0).abs()
        assert torch.allclose(moved, torch.full_like(moved, 1e-2 if k == "a" else 1e-3), rtol=1e-3), (k, n)


def test_without_lr_scale_the_optimizer_groups_are_the_two_they_always_were():
    from semcollab.train.lm_steps import _param_groups

    params = list(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2)).parameters())
    groups = _param_groups(params, LMTrainConfig(lr=0.5, weight_decay=0.1), {}, {})
    assert [(g["weight_decay"], g["lr"], [id(p) for p in g["params"]]) for g in groups] == [
        (0.1, 0.5, [id(params[0])]), (0.0, 0.5, [id(p) for p in params[1:]])]


def test_lr_scale_is_checked():
    with pytest.raises(ValueError, match=r"lr_scale names \['c'\]"):
        _one_step(_two_entries(), lr_scale={"c": 0.5})
    for bad in (0.0, float("inf"), True, "0.5"):
        with pytest.raises(ValueError, match=r"lr_scale\['b'\] must be a finite number > 0"):
            _one_step(_two_entries(), lr_scale={"b": bad})
    with pytest.raises(ValueError, match="needs `trainable` as a dict"):
        train_lm(lambda b: b, [torch.nn.Linear(2, 2)], [1], [1], list, LMTrainConfig(progress=False), log=None,
                 lr_scale={"0": 0.5})
    frozen = _two_entries()
    frozen["b"].requires_grad_(False)
    with pytest.raises(ValueError, match=r"lr_scale\['b'\] names an entry with no trainable parameter"):
        _one_step(frozen, lr_scale={"b": 0.5})
    shared = _two_entries()
    shared["b"] = torch.nn.ModuleList([torch.nn.Linear(3, 2), shared["a"]])  # a's weights reachable from b too
    with pytest.raises(ValueError, match="shared by trainable entries 'a' and 'b'"):
        train_lm(lambda r: r, shared, [1], [1], list, LMTrainConfig(progress=False), log=None, lr_scale={"b": 0.5})


def test_a_checkpoint_refuses_another_lr_scale(tmp_path):
    _one_step(_two_entries(), tmp_path / "ck", lr_scale={"b": 0.1})
    with pytest.raises(ValueError, match=r"different \['lr_scale'\]"):
        _one_step(_two_entries(), tmp_path / "ck")
    with pytest.raises(ValueError, match=r"different \['lr_scale'\]"):
        _one_step(_two_entries(), tmp_path / "ck", lr_scale={"b": 0.2})
    assert _one_step(_two_entries(), tmp_path / "ck", lr_scale={"b": 0.1}).stopped_by == "already_finished"


def test_a_run_with_lr_scale_resumes_to_the_uninterrupted_result(tmp_path):
    full = _two_entries()
    _one_step(full, epochs=6, lr_scale={"b": 0.1})
    part = _two_entries()
    assert _one_step(part, tmp_path / "ck", epochs=6, lr_scale={"b": 0.1},
                     should_stop=lambda s: s == 3).stopped_by == "stop_requested"
    resumed = _two_entries()
    assert _one_step(resumed, tmp_path / "ck", epochs=6, lr_scale={"b": 0.1}).resumed_from_step == 3
    for k in full:
        for (n, p), q in zip(full[k].named_parameters(), resumed[k].parameters()):
            assert torch.equal(p, q), (k, n)


def test_length_buckets():
    lengths = [5, 1, 9, 3, 3, 7, 2, 8, 6, 4, 10]
    a = length_bucketed_batches(lengths, 3, seed=0, epoch=0)
    assert sorted(i for b in a for i in b) == list(range(11)) and len(a) == math.ceil(11 / 3)
    spans = sorted(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in a)
    assert spans[-1] <= 2  # sorted then chunked: neighbours in length share a batch
    assert a == length_bucketed_batches(lengths, 3, seed=0, epoch=0)
    assert any(length_bucketed_batches(lengths, 3, seed=0, epoch=e) != a for e in range(1, 5))


def test_longest_first_batches_by_hand():
    # lengths 3, 5, 3, 9, 1: longest first, the two 3s in input order (rows 0 then 2)
    got = [b.tolist() for b in longest_first_batches([3, 5, 3, 9, 1], 2)]
    assert got == [[3, 1], [0, 2], [4]]
    assert longest_first_batches([], 4) == []
    with pytest.raises(ValueError, match="batch_size must be positive"):
        longest_first_batches([1, 2], 0)


def test_a_damaged_checkpoint_is_named(tmp_path):
    from semcollab.runs.checkpoints import CheckpointMismatchError

    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match=r"checkpoint\.pt cannot be read.*delete it"):
        _one_step(_two_entries(), tmp_path / "ck")
