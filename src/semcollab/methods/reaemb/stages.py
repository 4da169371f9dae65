"""ReaEmb's two training stages on an encoder and item texts (the dataset runner is :mod:`.pipeline`):
stage 1 (LRCL) trains LoRA + the thought module + the temperature, stage 2 (CRRL) the thought module alone.

Under torchrun both stages train data-parallel through ``train_lm`` (each rank its slice of every batch, gradients
averaged). Stage 1 gathers the slices' embeddings over the ranks (:func:`gather_views`, autograd-aware), so its
in-batch negatives span the global batch and its loss and gradient are the one-process ones (up to rounding and
the padding of a slice); stage 2's batch-normalised advantages still come from the rank's own rows (per-shard
semantics, as DDP without a gather). Views and rollout noise are drawn per rank and step. Rank 0 alone logs; a
stage-2 result's ``rewards`` are rank 0's shards'."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn

from ... import distributed as ddp
from ...config import ConfigError, resolve_device
from ...lm.dtype import keep_lora_outputs_fp32
from ...lm.lora import add_lora
from ...text.attribute_text import attribute_views
from ...train.lm_steps import LMTrainResult, train_lm
from .config import Stage1Config, Stage2Config
from .encoder import ReaEmbEncoder, freeze_lm
from .objectives import (
    Candidates,
    clipped_policy_loss,
    gaussian_log_prob,
    group_advantage,
    lrcl_loss,
    rank_reward,
    rollout_sigma,
)


def _seed_from_torch() -> int:
    """A seed drawn from torch's RNG, which ``train_lm`` seeds and restores on resume, so data drawn with
    it (the attribute views) repeat exactly when a run is resumed."""
    return int(torch.randint(0, 2**31 - 1, (1,)).item())


def gather_views(emb_a: torch.Tensor, emb_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's two views ``(n_r, d)`` -> the global batch's ``(B, d)`` each (rank order = the batch's row
    order, since ranks take contiguous slices), differentiable: every rank then computes the global loss L.

    Why ``train_lm``'s shard weights (``w_s = N n_s / B``, made for a per-row mean loss) need no correction: the
    gather's backward sums every rank's upstream gradient ``w_s dL`` into each slice, and the weights sum to N,
    so rank r's parameters get ``N dL_r`` (the part of dL through its rows) and the mean over the ranks is dL; a
    parameter used directly on every rank (the temperature) gets ``w_r dL``, whose mean is dL too."""
    size = torch.tensor([len(emb_a)], device=emb_a.device)
    sizes = [torch.zeros_like(size) for _ in range(ddp.world_size())]
    dist.all_gather(sizes, size)
    sizes = [int(n) for n in sizes]
    both = torch.cat([emb_a, emb_b], 1)  # one gather for both views; slices padded to the longest
    both = torch.cat([both, both.new_zeros(max(sizes) - len(both), both.shape[1])])
    full = torch.cat([part[:n] for part, n in zip(dist_nn.all_gather(both), sizes)])
    return full[:, :emb_a.shape[1]], full[:, emb_a.shape[1]:]


def _check_slices(n_rows: int, batch_size: int) -> None:
    """Under torchrun stage 1's loss is a collective: every rank needs rows in every batch (``train_lm`` skips a
    rank whose slice is empty, which would leave the others waiting in the gather)."""
    world, last = ddp.world_size(), n_rows % batch_size
    if batch_size < world or 0 < last < world:
        raise ConfigError(f"stage 1 under {world} ranks gathers every batch over the ranks, so every batch needs at "
                          f"least {world} items: {n_rows} items with text in batches of stage1.batch_size="
                          f"{batch_size} leave a last batch of {last or batch_size}; choose another "
                          "stage1.batch_size (or number of processes)")


def train_stage1(encoder: ReaEmbEncoder, texts: Sequence[str], cfg: Stage1Config | None = None,
                 checkpoint_dir: str | os.PathLike | None = None, log: Callable[[str], None] | None = print,
                 should_stop: Callable[[int], bool] | None = None, *, seed: int = 0, device: str = "auto",
                 progress: bool = True, temp_min: float = 1e-3, temp_max: float = 100.0) -> LMTrainResult:
    """LRCL: train LoRA (added here when ``encoder.lm`` has none, seeded by ``seed``), the
    thought module and the temperature on two attribute-dropout views per item (``texts`` in
    ``"attribute is value; ..."`` form, see :mod:`semcollab.text.attribute_text`; empty texts skipped).

    Resumable: the same call with the same ``checkpoint_dir`` continues where a stopped run ended (views
    are drawn from the RNG that ``train_lm`` restores). Returns ``train_lm``'s result; the trained
    parameters are in ``encoder`` (and in the checkpoint). ``seed``, ``device``, ``progress``: the run's (see
    :meth:`Stage1Config.train_config`). The temperature is clamped to ``[temp_min, temp_max]`` (authors: tau >=
    1e-3)."""
    if not (isinstance(temp_min, (int, float)) and isinstance(temp_max, (int, float)) and 0 < temp_min < temp_max):
        raise ConfigError(f"stage 1 needs 0 < temp_min < temp_max, got temp_min={temp_min}, temp_max={temp_max}")
    cfg = (cfg or Stage1Config()).validate()
    train = cfg.train_config(seed, device, progress).validate()
    lora = cfg.lora_config().validate()
    log = log if ddp.is_main() else None  # under torchrun rank 0 alone logs
    say = log or (lambda _m: None)
    if not hasattr(encoder.lm, "peft_config"):
        torch.manual_seed(train.seed)
        encoder.lm = add_lora(encoder.lm, lora)
        keep_lora_outputs_fp32(encoder.lm)  # over bf16 weights the adapter's delta is not rounded away
    rows = [i for i, t in enumerate(texts) if str(t).strip()]
    if len(rows) < 2:
        raise ValueError(f"stage 1 needs at least 2 non-empty item texts, got {len(rows)}")
    if len(rows) < len(texts):
        say(f"stage 1: skipping {len(texts) - len(rows)} items with empty text")
    lengths = [len(r) for r in encoder.token_ids([texts[i] for i in rows])]
    encoder.to(resolve_device(train.device))
    gather = ddp.active()
    if gather:
        _check_slices(len(rows), train.batch_size)

    def collate(batch: list[int]) -> dict:
        rng = np.random.default_rng(_seed_from_torch())
        views = [attribute_views(texts[i], cfg.view_drop, rng) for i in batch]
        return encoder.tokenize([v[0] for v in views] + [v[1] for v in views], device="cpu")

    def loss_fn(batch: dict) -> torch.Tensor:
        emb = encoder.embed(batch["input_ids"], batch["attention_mask"], "two_pass")
        a, b = emb.chunk(2)
        if gather:  # in-batch negatives over the global batch: the one-process loss
            a, b = gather_views(a, b)
        return lrcl_loss(a, b, encoder.log_temp, cfg.soft_targets, cfg.detach_targets, cfg.normalize,
                         temp_min, temp_max)

    trainable = {"lm": encoder.lm, "thought": encoder.thought, "log_temp": encoder.log_temp}
    return train_lm(loss_fn, trainable, rows, lengths, collate, train, checkpoint_dir, model=encoder.lm,
                    should_stop=should_stop, log=log)


@dataclass
class Stage2Result:
    train: LMTrainResult
    anchors: int  # anchors trained on
    no_cooccurrence: int  # from the candidates
    rewards: list[float] = field(default_factory=list)  # mean noise-free reward per batch, this call


def train_stage2(encoder: ReaEmbEncoder, texts: Sequence[str], candidates: Candidates,
                 cfg: Stage2Config | None = None, checkpoint_dir: str | os.PathLike | None = None,
                 log: Callable[[str], None] | None = print,
                 should_stop: Callable[[int], bool] | None = None, *, seed: int = 0, device: str = "auto",
                 progress: bool = True, candidate_mode: str = "kv_reuse") -> Stage2Result:
    """CRRL: LoRA merged and the LM frozen (:func:`freeze_lm`); only the thought module is trained.

    ``texts[i]`` describes item index ``i + 1`` (``candidates`` hold item indices). Per anchor and step:
    candidates embedded without gradient; pass 1 over the anchor's prefix once; the thought vector ``mu``;
    ``rollouts`` samples ``mu + sigma * eps`` (the first with ``eps = 0``), each finished on pass 1's cache;
    rewards by :func:`rank_reward` (positive at column 0); advantages by :func:`group_advantage` over the
    batch; loss :func:`clipped_policy_loss` of the Gaussian log-probs (:func:`gaussian_log_prob`).

    Each batch is used for one optimizer step, so the old policy is the current one (``logp_old =
    logp.detach()``, ratio 1, the gradient is the plain policy gradient) — the authors reuse each batch
    for two steps (TRL ``num_iterations=2``), which ``train_lm`` cannot express. Resumable like stage 1.
    ``candidate_mode``: how the candidates' embeddings are computed (no gradient either way)."""
    if candidate_mode not in ("kv_reuse", "two_pass"):
        raise ConfigError(f"candidate_mode must be kv_reuse or two_pass, got {candidate_mode!r}")
    cfg = (cfg or Stage2Config()).validate()
    train = cfg.train_config(seed, device, progress).validate()
    log = log if ddp.is_main() else None  # under torchrun rank 0 alone logs
    if len(texts) < candidates.candidates.max(initial=0):
        raise ValueError(f"candidates name item {candidates.candidates.max()} but only {len(texts)} texts were given")
    freeze_lm(encoder)
    encoder.to(resolve_device(train.device))
    rows = list(range(len(candidates.anchors)))
    if not rows:
        raise ValueError("no stage-2 anchors (no item co-occurs with another)")
    anchor_texts = [texts[int(a) - 1] for a in candidates.anchors]
    lengths = [len(r) for r in encoder.token_ids(anchor_texts)]
    k = candidates.candidates.shape[1]
    g = cfg.rollouts
    rewards_log: list[float] = []

    def collate(batch: list[int]) -> dict:
        anchor = encoder.tokenize([anchor_texts[r] for r in batch], device="cpu")
        cand = encoder.tokenize([texts[int(c) - 1] for r in batch for c in candidates.candidates[r]], device="cpu")
        return {"input_ids": anchor["input_ids"], "attention_mask": anchor["attention_mask"],
                "cand_ids": cand["input_ids"], "cand_mask": cand["attention_mask"]}

    def loss_fn(batch: dict) -> torch.Tensor:
        b = len(batch["input_ids"])
        with torch.no_grad():
            cand = encoder.embed(batch["cand_ids"], batch["cand_mask"], candidate_mode).view(b, k, -1)
            prefix = encoder.prefix_pass(batch["input_ids"], batch["attention_mask"])
        mu = encoder.thought(prefix.hidden, prefix.mask, prefix.thought_pos)  # (B, d), gradient
        sigma = rollout_sigma(mu, cfg.noise_sigma, cfg.noise_units).unsqueeze(-1)  # (B, 1, 1)
        eps = torch.randn(b, g, mu.shape[-1], device=mu.device)
        eps[:, 0] = 0
        sample = mu.detach().unsqueeze(1) + sigma * eps  # (B, G, d)
        with torch.no_grad():
            items = torch.stack([encoder.finish(prefix, sample[:, j]) for j in range(g)], 1)  # (B, G, d)
            rewards = rank_reward(items.reshape(b * g, -1), cand.repeat_interleave(g, 0), 0).view(b, g)
        rewards_log.append(float(rewards[:, 0].mean()))
        adv = group_advantage(rewards, rewards[:, 0], cfg.advantage_l2_norm)
        logp = gaussian_log_prob(sample, mu.unsqueeze(1), sigma)  # (B, G)
        return clipped_policy_loss(logp, logp.detach(), adv, cfg.eps_low, cfg.eps_high)

    res = train_lm(loss_fn, {"thought": encoder.thought}, rows, lengths, collate, train, checkpoint_dir,
                   should_stop=should_stop, log=log)
    return Stage2Result(res, len(rows), candidates.no_cooccurrence, rewards_log)
