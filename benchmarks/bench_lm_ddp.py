"""Per-step time of LoRA training (``train_lm``, a yes/no loss) in one process vs N torchrun ranks, and the cost of
the gradient all-reduce alone.

    python benchmarks/bench_lm_ddp.py --out one.json
    python -m torch.distributed.run --standalone --nproc-per-node=2 benchmarks/bench_lm_ddp.py --out two.json

The same global batch either way (each of N ranks runs batch/N rows). Rank 0 writes one JSON: the seconds of each
optimiser step (the first is warm-up), and of ``distributed.average_gradients`` over the LoRA gradients alone."""

from __future__ import annotations

import argparse
import json
import time

import torch

from semcollab import distributed as ddp
from semcollab.lm import LoRAConfig, add_lora, answer_token_ids, load_causal_lm, yes_no_logits, yes_no_loss
from semcollab.train.lm_steps import LMTrainConfig, train_lm

WORDS = ("Toy Story, Golden Eye, Space War, Love Actually, The Matrix, Heat, Casino, Fargo, Alien, Jaws, Rocky, "
         "Psycho, Vertigo, Brazil").split(", ")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lm", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--reduce-repeats", type=int, default=10)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    ddp.setup()
    model, tok = load_causal_lm(args.lm)
    yes_id, no_id = answer_token_ids(tok)
    torch.manual_seed(0)
    lm = add_lora(model, LoRAConfig(rank=args.lora_rank, dropout=0.0))
    n_rows = args.batch * args.steps
    rows = [{"text": "User watched " + ", ".join(WORDS[(i + j) % len(WORDS)] for j in range(8)) +
             f". Will the user like {WORDS[i % len(WORDS)]}? Answer:", "label": float(i % 2)} for i in range(n_rows)]
    lengths = [len(tok(r["text"])["input_ids"]) for r in rows]

    def collate(batch):
        enc = tok([r["text"] for r in batch], padding=True, return_tensors="pt")
        return {**enc, "label": torch.tensor([r["label"] for r in batch])}

    def loss_fn(b):
        return yes_no_loss(yes_no_logits(lm, b["input_ids"], b["attention_mask"], yes_id, no_id), b["label"])

    stamps = []

    def stamp(step):
        stamps.append(time.perf_counter())
        return False

    cfg = LMTrainConfig(epochs=1, batch_size=args.batch, lr=1e-4, progress=False, max_steps=args.steps, device="cpu")
    t0 = time.perf_counter()
    res = train_lm(loss_fn, {"lora": lm}, rows, lengths, collate, cfg, should_stop=stamp, log=None)
    steps = [b - a for a, b in zip([t0, *stamps[:-1]], stamps)]
    params = [p for p in lm.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    reduce_s = []
    for _ in range(args.reduce_repeats):
        t = time.perf_counter()
        ddp.average_gradients(params, [0.0, 0.0])
        reduce_s.append(time.perf_counter() - t)
    if ddp.is_main():
        out = {"lm": args.lm, "ranks": ddp.world_size(), "global_batch": args.batch, "steps": res.steps,
               "tokens_per_step": sum(lengths) / args.steps, "lora_params": sum(p.numel() for p in params),
               "threads": torch.get_num_threads(), "step_seconds": steps,
               "mean_step_seconds_after_first": sum(steps[1:]) / max(1, len(steps) - 1),
               "all_reduce_seconds": reduce_s, "median_all_reduce_seconds": sorted(reduce_s)[len(reduce_s) // 2],
               "losses": res.losses}
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
        print(json.dumps({k: v for k, v in out.items() if k not in ("losses",)}))


if __name__ == "__main__":
    main()
