"""LM-core throughput on CPU (or CUDA): LoRA training tokens/s and yes/no scoring rows/s, two-row head vs
the full vocabulary head, for the offline causal LMs of ``semcollab.hub.models``.

Usage: python benchmarks/bench_lm_core.py [--models smollm2-135m,gemma3-270m] [--steps 4] [--out result.json]
Prompts are synthetic TALLRec-style rows ("MovieList: ... TargetMovie: ...") cut to ~``--tokens`` tokens."""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from semcollab.lm import (
    LoRAConfig,
    add_lora,
    answer_token_ids,
    load_causal_lm,
    yes_no_logits,
    yes_no_logits_full_head,
    yes_no_loss,
)
from semcollab.methods.lm_ctr.prompts import TALLREC_MOVIE
from semcollab.train.lm_steps import LMTrainConfig, train_lm

TITLES = ["Toy Story (1995)", "GoldenEye (1995)", "Heat (1995)", "Casino (1995)", "Jumanji (1995)", "Babe (1995)",
          "Sabrina (1995)", "Sense and Sensibility (1995)", "Four Rooms (1995)", "Get Shorty (1995)",
          "Copycat (1995)", "Twelve Monkeys (1995)", "Dead Man Walking (1995)", "Braveheart (1995)"]


def _load(name: str):
    try:
        return load_causal_lm(name)
    except FileNotFoundError:
        if name != "smollm2-135m":
            raise
        from semcollab.text.encoders import smollm2_dir  # the GGUF that text/encoders.py fetches from PyPI

        return load_causal_lm(str(smollm2_dir()))


def _prompts(tok, n: int, tokens: int) -> list[str]:
    out = []
    for i in range(n):
        hist, k = [], i
        while True:
            hist.append(TITLES[k % len(TITLES)])
            k += 3
            text = TALLREC_MOVIE.render(history=", ".join(hist), title=TITLES[(i * 5) % len(TITLES)])
            if len(tok(text)["input_ids"]) >= tokens:
                break
        out.append(text)
    return out


def _timed(fns: dict, reps: int) -> dict:
    """Best-of-``reps`` seconds per call of each function, calls interleaved after a warm-up: on a shared
    CPU other jobs' bursts inflate single calls, and interleaving spreads them over the contenders."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def bench(name: str, steps: int, batch: int, tokens: int, score_batch: int, reps: int, device: str) -> dict:
    t0 = time.perf_counter()
    model, tok = _load(name)
    model.to(device)
    load_s = time.perf_counter() - t0
    yes_id, no_id = answer_token_ids(tok)
    res = {"model": name, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
           "vocab": model.get_output_embeddings().weight.shape[0], "hidden": model.config.hidden_size,
           "layers": model.config.num_hidden_layers, "load_seconds": round(load_s, 1),
           "answer_tokens": tok.convert_ids_to_tokens([yes_id, no_id])}

    # scoring: no grad, left-padded batch, two head rows vs the full head
    enc = tok(_prompts(tok, score_batch, tokens), return_tensors="pt", padding=True).to(device)
    res["score_batch_shape"] = list(enc["input_ids"].shape)
    with torch.no_grad():
        two = yes_no_logits(model, enc["input_ids"], enc["attention_mask"], yes_id, no_id)
        full = yes_no_logits_full_head(model, enc["input_ids"], enc["attention_mask"], yes_id, no_id)
        res["max_abs_diff_two_vs_full"] = float((two.float() - full.float()).abs().max())
        t = _timed({"two_rows": lambda: yes_no_logits(model, enc["input_ids"], enc["attention_mask"], yes_id, no_id),
                    "full_head": lambda: yes_no_logits_full_head(model, enc["input_ids"], enc["attention_mask"],
                                                                 yes_id, no_id)}, reps)
    for k, sec in t.items():
        res[f"score_rows_per_s_{k}"] = round(score_batch / sec, 2)

    # LoRA training through the generic loop (loss on the two answer logits)
    peft = add_lora(model, LoRAConfig(rank=8, alpha=16, dropout=0.05))
    texts = _prompts(tok, batch * (steps + 1), tokens)
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(texts)]
    lengths = [len(tok(t)["input_ids"]) for t in texts]

    def collate(b):
        e = tok([r["text"] for r in b], return_tensors="pt", padding=True)
        return {**e, "label": torch.tensor([r["label"] for r in b])}

    def loss_fn(b):
        return yes_no_loss(yes_no_logits(peft, b["input_ids"], b["attention_mask"], yes_id, no_id), b["label"])

    cfg = LMTrainConfig(epochs=1, batch_size=batch, lr=1e-4, warmup_ratio=0.0, device=device, progress=False)
    train_lm(loss_fn, {"lm": peft}, rows[:batch], lengths[:batch], collate, cfg, log=None)  # warm-up step
    stamps = [time.perf_counter()]  # step times: the median resists other jobs' bursts on a shared CPU
    out = train_lm(loss_fn, {"lm": peft}, rows[batch:], lengths[batch:], collate, cfg, log=None,
                   should_stop=lambda _s: stamps.append(time.perf_counter()) and False)
    step_s = sorted(b - a for a, b in zip(stamps, stamps[1:]))
    median, best = step_s[len(step_s) // 2], step_s[0]
    res.update(train_steps=out.steps, train_batch=batch, train_tokens=out.tokens,
               train_tokens_per_s=round(out.tokens_per_second, 1), train_seconds_per_step=round(out.seconds / out.steps, 2),
               train_median_seconds_per_step=round(median, 2),
               train_tokens_per_s_median=round(out.tokens / out.steps / median, 1),
               train_tokens_per_s_best_step=round(out.tokens / out.steps / best, 1),
               lora_params_m=round(sum(p.numel() for p in peft.parameters() if p.requires_grad) / 1e6, 2))
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--score-batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    report = {"device": a.device, "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
              "torch": torch.__version__, "results": []}
    for name in a.models.split(","):
        try:
            report["results"].append(bench(name, a.steps, a.batch, a.tokens, a.score_batch, a.reps, a.device))
        except (FileNotFoundError, OSError, RuntimeError) as exc:
            report["results"].append({"model": name, "error": f"{type(exc).__name__}: {exc}"})
        print(json.dumps(report["results"][-1]), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
