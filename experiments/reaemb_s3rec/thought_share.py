"""How much can the thought token move a ReaEmb item embedding, and does stage 2's exploration noise ever
change its reward? Pass 2 is causal and the thought is last, so only the thought [+ EOS] positions differ
from pass 1: under mean pooling over ~L tokens the thought can move at most those 1-2 states of the mean.
This measures, on stage-2 anchors of a trained run, for each trained state:
  * thought effect: ||e(trained thought) - e(the token's own input embedding)|| / ||e|| and their cosine;
  * tail share: ||(sum of the thought [+ EOS] last-layer states) / T|| / ||e||;
  * noise-free rank reward (chance: 0.301 for 1 positive among 10) and the share of noisy rollouts
    (stage 2's sigma and units) whose reward differs from the noise-free one: when it is ~0, stage 2's
    advantages do not depend on the noise and the policy gradient carries no signal.

--sigmas: further noise scales (in the run's noise units) whose share of reward-changing rollouts is also
measured, to see how much exploration the rank reward needs before it responds.

Usage: python experiments/reaemb_s3rec/thought_share.py RUN_DIR [--anchors 64] [--sigmas 1 10] [--json-out FILE]"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from semcollab.methods.reaemb import (
    build_encoder,
    load_data,
    load_pipeline_config,
    rank_reward,
    rollout_sigma,
    stage2_candidates,
)
from semcollab.methods.reaemb.encoder import _masked_sum

ap = argparse.ArgumentParser()
ap.add_argument("run_dir", type=Path)
ap.add_argument("--anchors", type=int, default=64)
ap.add_argument("--batch-size", type=int, default=16)
ap.add_argument("--sigmas", type=float, nargs="*", default=[1.0, 10.0])
ap.add_argument("--json-out", type=Path)
args = ap.parse_args()

cfg = load_pipeline_config(args.run_dir / "config.yaml")
data = load_data(cfg)
cands = stage2_candidates(cfg, data)
rows = np.random.default_rng(0).choice(len(cands.anchors), min(args.anchors, len(cands.anchors)), replace=False)
g = cfg.stage2.rollouts
sigmas = [cfg.stage2.noise_sigma] + [x for x in args.sigmas if x != cfg.stage2.noise_sigma]
out = {"run_dir": str(args.run_dir), "anchors": len(rows), "rollouts": g, "noise_sigma": cfg.stage2.noise_sigma,
       "noise_units": cfg.stage2.noise_units, "chance_reward": float(np.mean([1 / (1 + np.log2(r + 2))
                                                                             for r in range(cands.candidates.shape[1])]))}
for stage in ("stage1", "stage2"):
    enc = build_encoder(cfg, stage, args.run_dir).eval()
    gen = torch.Generator().manual_seed(0)
    rel, cos, tail_share, reward, tokens = [], [], [], [], []
    changed = {x: [] for x in sigmas}
    for s in range(0, len(rows), args.batch_size):
        rb = rows[s:s + args.batch_size]
        texts = [data.texts[int(cands.anchors[r]) - 1] for r in rb]
        ctexts = [data.texts[int(c) - 1] for r in rb for c in cands.candidates[r]]
        with torch.no_grad():
            batch = enc.tokenize(texts)
            prefix = enc.prefix_pass(batch["input_ids"], batch["attention_mask"])
            mu = enc.thought(prefix.hidden, prefix.mask, prefix.thought_pos)
            e = enc.finish(prefix, mu)
            own = enc.lm.get_input_embeddings()(prefix.tail_ids[:, 0]).float()
            e_own = enc.finish(prefix, own)
            rel += ((e - e_own).norm(dim=1) / e.norm(dim=1)).tolist()
            cos += torch.nn.functional.cosine_similarity(e, e_own).tolist()
            n_real = prefix.full_mask.sum(1, keepdim=True).float()
            tail_states = e * n_real - _masked_sum(prefix.hidden, prefix.mask)  # as finish() sums the prefix
            tail_share += ((tail_states / n_real).norm(dim=1) / e.norm(dim=1)).tolist()
            tokens += n_real.squeeze(1).tolist()
            b, k = len(rb), cands.candidates.shape[1]
            cand = torch.cat([enc.embed_texts(ctexts[i:i + 64], "kv_reuse") for i in range(0, len(ctexts), 64)])
            cand = cand.view(b, k, -1)
            r0 = rank_reward(e, cand, 0)
            reward += r0.tolist()
            for x in sigmas:
                for _ in range(g - 1):
                    noisy = mu + rollout_sigma(mu, x, cfg.stage2.noise_units) * torch.randn(mu.shape, generator=gen)
                    changed[x] += (rank_reward(enc.finish(prefix, noisy), cand, 0) != r0).tolist()
    out[stage] = {"thought_rel_change": float(np.mean(rel)), "thought_cosine": float(np.mean(cos)),
                  "tail_share": float(np.mean(tail_share)), "mean_tokens": float(np.mean(tokens)),
                  "noise_free_reward": float(np.mean(reward)),
                  "noisy_rollouts_reward_changed": {str(x): float(np.mean(v)) for x, v in changed.items()}}
    print(stage, json.dumps(out[stage]), flush=True)
if args.json_out:
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(out, indent=1))
