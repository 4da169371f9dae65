"""LM-core throughput on CPU (or CUDA) per weight dtype: yes/no scoring rows/s (two head rows and the full
vocabulary head), LoRA training tokens/s, hidden-state items/s and peak memory, for the offline causal LMs of
``semcollab.hub.models``; the dtypes are timed interleaved (a shared machine's bursts hit all of them).

    python benchmarks/bench_lm_core.py --models smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b \
        --dtype float32,bfloat16 --memory --parity --profile --out lm_core.json

Prompts are synthetic TALLRec-style rows ("MovieList: ... TargetMovie: ...") cut to ~``--tokens`` tokens.
``--dtype`` (default float32, the benchmark before the dtype policy): the base weights' dtype; LoRA stays float32
(PEFT's autocast_adapter_dtype) and the train loop autocasts to bf16 over bf16 weights (semcollab.lm.dtype).
``--memory``: peak RSS per dtype, each in a child process. ``--parity``: a TALLRec adapter trained
``--parity-steps`` steps in float32 on the CoLLM ML-1M training rows scores ``--parity-rows`` test rows over
float32 and over bfloat16 weights (AUC difference, max |yes-no logit| difference). ``--profile``: the top ops
of one bf16 LoRA training step (torch.profiler)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import subprocess
import sys
import time
from functools import partial

import numpy as np
import torch

from semcollab.lm import (
    LoRAConfig,
    add_lora,
    answer_token_ids,
    encode_texts,
    load_causal_lm,
    longest_first_batches,
    yes_no_logits,
    yes_no_logits_full_head,
    yes_no_loss,
)
from semcollab.lm.dtype import BF16_FLAGS, cpu_bf16, cpu_flags, keep_lora_outputs_fp32
from semcollab.methods.lm_ctr.prompts import TALLREC_MOVIE
from semcollab.runs.record import cpu_model
from semcollab.train.lm_steps import LMTrainConfig, train_lm

TITLES = ["Toy Story (1995)", "GoldenEye (1995)", "Heat (1995)", "Casino (1995)", "Jumanji (1995)", "Babe (1995)",
          "Sabrina (1995)", "Sense and Sensibility (1995)", "Four Rooms (1995)", "Get Shorty (1995)",
          "Copycat (1995)", "Twelve Monkeys (1995)", "Dead Man Walking (1995)", "Braveheart (1995)"]


def _load(name: str, dtype: str = "float32"):
    try:
        return load_causal_lm(name, dtype=dtype)
    except FileNotFoundError:
        if name != "smollm2-135m":
            raise
        from semcollab.text.encoders import smollm2_dir  # the GGUF that text/encoders.py fetches from PyPI

        return load_causal_lm(str(smollm2_dir()), dtype=dtype)


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


def _dtype_model(model, dtype: str):
    """A copy of ``model`` with its weights in ``dtype`` (what ``load_causal_lm(dtype=...)`` gives: the GGUFs
    dequantise to float32 first either way); the float32 model itself for float32."""
    return model if dtype == "float32" else copy.deepcopy(model).to(getattr(torch, dtype))


def _rss_mb() -> float:
    """This process's peak resident memory: VmHWM of /proc/self/status (ru_maxrss would carry the parent's peak
    into a child on Linux), else ru_maxrss (KiB on Linux, bytes on macOS)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _train_rows(tok, batch: int, n_batches: int, tokens: int):
    texts = _prompts(tok, batch * n_batches, tokens)
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(texts)]
    return rows, [len(tok(t)["input_ids"]) for t in texts]


def _trainer(peft, tok, yes_id: int, no_id: int, batch: int, device: str):
    """``run(rows, lengths) -> (tokens, [seconds per step])`` through the generic loop (loss on the two answer
    logits); a fresh optimizer per call, which costs nothing measurable."""
    def collate(b):
        e = tok([r["text"] for r in b], return_tensors="pt", padding=True)
        return {**e, "label": torch.tensor([r["label"] for r in b])}

    def loss_fn(b):
        return yes_no_loss(yes_no_logits(peft, b["input_ids"], b["attention_mask"], yes_id, no_id), b["label"])

    cfg = LMTrainConfig(epochs=1, batch_size=batch, lr=1e-4, warmup_ratio=0.0, device=device, progress=False)

    def run(rows, lengths):
        stamps = [time.perf_counter()]
        out = train_lm(loss_fn, {"lm": peft}, rows, lengths, collate, cfg, model=peft, log=None,
                       should_stop=lambda _s: stamps.append(time.perf_counter()) and False)
        return out.tokens / out.steps, [b - a for a, b in zip(stamps, stamps[1:])]
    return run


def bench(name: str, steps: int, batch: int, tokens: int, score_batch: int, reps: int, device: str,
          dtypes: list[str]) -> dict:
    t0 = time.perf_counter()
    base, tok = _load(name)
    base.to(device)
    load_s = time.perf_counter() - t0
    yes_id, no_id = answer_token_ids(tok)
    res = {"model": name, "params_m": round(sum(p.numel() for p in base.parameters()) / 1e6, 1),
           "vocab": base.get_output_embeddings().weight.shape[0], "hidden": base.config.hidden_size,
           "layers": base.config.num_hidden_layers, "load_seconds": round(load_s, 1),
           "answer_tokens": tok.convert_ids_to_tokens([yes_id, no_id]), "dtypes": dtypes}
    models = {dt: _dtype_model(base, dt) for dt in dtypes}
    one = len(dtypes) == 1  # one dtype: the keys of the benchmark before --dtype (comparable to old results)

    def key(k: str, dt: str) -> str:
        return k if one else f"{k}_{dt}"

    # scoring: no grad, left-padded batch; two head rows (per dtype, interleaved) and the full head
    enc = tok(_prompts(tok, score_batch, tokens), return_tensors="pt", padding=True).to(device)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    res["score_batch_shape"] = list(ids.shape)
    fns = {}
    with torch.no_grad():
        for dt, m in models.items():
            two = yes_no_logits(m, ids, mask, yes_id, no_id)
            full = yes_no_logits_full_head(m, ids, mask, yes_id, no_id)
            res[key("max_abs_diff_two_vs_full", dt)] = float((two.float() - full.float()).abs().max())
            fns[key("two_rows", dt)] = partial(yes_no_logits, m, ids, mask, yes_id, no_id)
            fns[key("full_head", dt)] = partial(yes_no_logits_full_head, m, ids, mask, yes_id, no_id)
        t = _timed(fns, reps)
    for k, sec in t.items():
        res[f"score_rows_per_s_{k}"] = round(score_batch / sec, 2)

    # hidden states (last token of the final layer, as the item-text encoders use), interleaved
    titles = (TITLES * (1 + 4 * score_batch // len(TITLES)))[:4 * score_batch]
    with torch.no_grad():
        t = _timed({dt: partial(encode_texts, m, tok, titles, batch_size=score_batch) for dt, m in models.items()},
                   reps)
    for dt, sec in t.items():
        res[key("hidden_items_per_s", dt)] = round(len(titles) / sec, 1)

    # LoRA training: a warm-up step per dtype, then rounds of ``steps`` steps, the dtypes in turn each round
    peft = {dt: add_lora(m, LoRAConfig(rank=8, alpha=16, dropout=0.05)) for dt, m in models.items()}
    for p in peft.values():
        keep_lora_outputs_fp32(p)  # as the LM-CTR models do (a no-op over float32 weights)
    for dt, p in peft.items():
        res[key("lora_dtypes", dt)] = sorted({str(q.dtype) for q in p.parameters() if q.requires_grad})
    runners = {dt: _trainer(p, tok, yes_id, no_id, batch, device) for dt, p in peft.items()}
    rows, lengths = _train_rows(tok, batch, steps + 1, tokens)
    for run in runners.values():
        run(rows[:batch], lengths[:batch])
    step_s = {dt: [] for dt in dtypes}
    tok_per_step = {}
    for _ in range(max(1, reps // 2)):
        for dt, run in runners.items():
            tok_per_step[dt], secs = run(rows[batch:], lengths[batch:])
            step_s[dt] += secs
    for dt, secs in step_s.items():
        secs.sort()
        median = secs[len(secs) // 2]
        res.update({key("train_median_seconds_per_step", dt): round(median, 3),
                    key("train_tokens_per_s_median", dt): round(tok_per_step[dt] / median, 1),
                    key("train_tokens_per_s_best_step", dt): round(tok_per_step[dt] / secs[0], 1)})
    res.update(train_steps=steps, train_batch=batch, train_timed_steps=len(step_s[dtypes[0]]),
               lora_params_m=round(sum(q.numel() for q in peft[dtypes[0]].parameters() if q.requires_grad) / 1e6, 2))
    if not one and "float32" in dtypes:
        for dt in dtypes:
            if dt != "float32":
                res[f"speedup_{dt}"] = {
                    "score": round(res[f"score_rows_per_s_two_rows_{dt}"] / res["score_rows_per_s_two_rows_float32"], 2),
                    "train": round(res[f"train_tokens_per_s_median_{dt}"] / res["train_tokens_per_s_median_float32"], 2),
                    "hidden": round(res[f"hidden_items_per_s_{dt}"] / res["hidden_items_per_s_float32"], 2)}
    res["peak_rss_mb_all_dtypes"] = _rss_mb()
    return res


def memory_probe(name: str, dtype: str, batch: int, tokens: int, score_batch: int, device: str) -> dict:
    """Peak RSS of one process that loads ``name`` in ``dtype``, scores a batch, embeds a batch and takes one
    LoRA step (run in a child per dtype: a process's peak only grows, so interleaved dtypes cannot share one)."""
    model, tok = _load(name, dtype)
    model.to(device)
    loaded = _rss_mb()
    yes_id, no_id = answer_token_ids(tok)
    enc = tok(_prompts(tok, score_batch, tokens), return_tensors="pt", padding=True).to(device)
    with torch.no_grad():
        yes_no_logits(model, enc["input_ids"], enc["attention_mask"], yes_id, no_id)
        encode_texts(model, tok, TITLES, batch_size=score_batch)
    peft = add_lora(model, LoRAConfig(rank=8, alpha=16, dropout=0.05))
    keep_lora_outputs_fp32(peft)
    rows, lengths = _train_rows(tok, batch, 1, tokens)
    _trainer(peft, tok, yes_id, no_id, batch, device)(rows, lengths)
    return {"dtype": dtype, "rss_mb_after_load": loaded, "peak_rss_mb": _rss_mb()}


def peak_memory(name: str, dtypes: list[str], a) -> dict:
    out = {}
    for dt in dtypes:
        cmd = [sys.executable, __file__, "--memory-probe", dt, "--models", name, "--batch", str(a.batch),
               "--tokens", str(a.tokens), "--score-batch", str(a.score_batch), "--device", a.device]
        r = subprocess.run(cmd, capture_output=True, text=True)
        try:
            out[dt] = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out[dt] = {"error": (r.stderr or r.stdout)[-500:]}
    return out


@torch.no_grad()
def _ctr_logits(model, part, batch_size: int) -> np.ndarray:
    """log P(yes)/P(no) per row (the model's own prompt and scoring path), in row order."""
    model.eval()
    out = np.zeros(len(part), dtype=np.float64)
    for idx in longest_first_batches(model.prompt_lengths(part), batch_size):
        out[idx] = model.logits(part.batch(idx)).float().cpu().numpy()
    return out


def parity(name: str, steps: int, batch: int, rows: int, device: str, dtype: str = "bfloat16") -> dict:
    """Train a TALLRec LoRA adapter for ``steps`` steps in float32 on the CoLLM ML-1M training rows, then score a
    fixed ``rows``-row slice of the test split (data.max_test_rows with seed 0) with that same adapter over
    float32 and over ``dtype`` base weights: AUC of each and the largest yes/no logit difference."""
    from sklearn.metrics import roc_auc_score

    from semcollab.config import DataConfig
    from semcollab.data import load_ctr
    from semcollab.data.ctr import prepare_ctr
    from semcollab.tasks.ctr import build_ctr_model

    split = prepare_ctr(load_ctr(DataConfig(name="collm-ml-1m")), 10,
                        {"train": steps * batch, "valid": 8, "test": rows}, 0)
    params = {"lm": name, "batch_size": batch, "score_batch_size": 16}
    t0 = time.perf_counter()
    ref = build_ctr_model("tallrec", {**params, "dtype": "float32"}, split)
    train = split.parts["train"]
    ref.text_only = True
    cfg = LMTrainConfig(epochs=1, batch_size=batch, lr=3e-4, warmup_ratio=0.0, device=device, progress=False)
    fit = train_lm(ref.loss, {"lora": ref.lm}, list(range(len(train))), ref.prompt_lengths(train),
                   lambda r: train.batch(np.asarray(r)), cfg, model=ref.lm, log=None)
    state = {k: v.clone() for k, v in ref.trainable_state_dict().items()}
    test = split.parts["test"]
    res = {"model": name, "parity_rows": len(test), "train_steps": fit.steps, "train_rows": len(train),
           "final_loss": round(float(np.mean(fit.losses[-5:])), 4), "train_seconds": round(time.perf_counter() - t0, 1)}
    logits = {}
    for dt in ("float32", dtype):
        m = ref if dt == "float32" else build_ctr_model("tallrec", {**params, "dtype": dt}, split)
        m.load_trainable_state_dict(state)
        t1 = time.perf_counter()
        logits[dt] = _ctr_logits(m, test, 16)
        res[f"score_seconds_{dt}"] = round(time.perf_counter() - t1, 1)
        res[f"auc_{dt}"] = round(float(roc_auc_score(test.labels, logits[dt])), 5)
        res[f"lm_weights_{dt}"] = str(next(p for n, p in m.lm.named_parameters() if "lora_" not in n).dtype)
        res[f"lora_{dt}"] = sorted({str(p.dtype) for n, p in m.lm.named_parameters() if "lora_" in n})
    diff = np.abs(logits["float32"] - logits[dtype])
    res.update(auc_difference=round(res[f"auc_{dtype}"] - res["auc_float32"], 5),
               max_abs_logit_difference=round(float(diff.max()), 5),
               mean_abs_logit_difference=round(float(diff.mean()), 5),
               logit_std_float32=round(float(logits["float32"].std()), 5))
    return res


def profile_step(name: str, batch: int, tokens: int, device: str, dtype: str = "bfloat16", top: int = 20,
                 lora_dropout: float = 0.05) -> dict:
    """The top ops (self CPU time) of one LoRA training step over ``dtype`` weights, after a warm-up step."""
    from torch.profiler import ProfilerActivity, profile

    model, tok = _load(name, dtype)
    model.to(device)
    yes_id, no_id = answer_token_ids(tok)
    peft = add_lora(model, LoRAConfig(rank=8, alpha=16, dropout=lora_dropout))
    keep_lora_outputs_fp32(peft)
    run = _trainer(peft, tok, yes_id, no_id, batch, device)
    rows, lengths = _train_rows(tok, batch, 2, tokens)
    run(rows[:batch], lengths[:batch])
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        run(rows[batch:], lengths[batch:])
    wall = time.perf_counter() - t0
    ops = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ops)
    return {"dtype": dtype, "lora_dropout": lora_dropout, "step_wall_seconds": round(wall, 3),
            "self_cpu_seconds": round(total / 1e6, 3),
            "top_ops_share": {e.key: round(e.self_cpu_time_total / total, 4)
                              for e in sorted(ops, key=lambda e: -e.self_cpu_time_total)[:top]},
            "table": ops.table(sort_by="self_cpu_time_total", row_limit=top)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="smollm2-135m")
    ap.add_argument("--dtype", default="float32", help="comma-separated: float32,bfloat16 (interleaved)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--score-batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--memory", action="store_true", help="peak RSS per dtype, each in a child process")
    ap.add_argument("--parity", action="store_true", help="same fp32-trained adapter scored in fp32 and bf16")
    ap.add_argument("--parity-rows", type=int, default=1024)
    ap.add_argument("--parity-steps", type=int, default=32)
    ap.add_argument("--profile", action="store_true",
                    help="the top ops of one bf16 training step, LoRA dropout 0.05 and 0")
    ap.add_argument("--skip-throughput", action="store_true", help="only --memory / --parity / --profile")
    ap.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dtypes = a.dtype.split(",")
    if a.memory_probe:
        print(json.dumps(memory_probe(a.models, a.memory_probe, a.batch, a.tokens, a.score_batch, a.device)))
        return
    flags = cpu_flags() or set()
    report = {"device": a.device, "cpu": cpu_model(), "cpu_bf16": cpu_bf16(),
              "cpu_bf16_flags": sorted(f for f in BF16_FLAGS if f in flags),  # AMX or not: the model name may not say
              "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()), "torch_threads": torch.get_num_threads(),
              "python": platform.python_version(), "torch": torch.__version__, "results": []}
    for name in a.models.split(","):
        try:
            res = ({"model": name} if a.skip_throughput else
                   bench(name, a.steps, a.batch, a.tokens, a.score_batch, a.reps, a.device, dtypes))
            if a.memory:
                res["peak_memory"] = peak_memory(name, dtypes, a)
            if a.parity:
                res["parity"] = parity(name, a.parity_steps, a.batch, a.parity_rows, a.device)
            if a.profile:  # with the LoRA dropout the models use (0.05) and without it (its mask draws' cost)
                res["profile"] = [profile_step(name, a.batch, a.tokens, a.device, lora_dropout=p) for p in (0.05, 0.0)]
                for prof in res["profile"]:
                    print(prof["table"], flush=True)
        except (FileNotFoundError, OSError, RuntimeError) as exc:
            res = {"model": name, "error": f"{type(exc).__name__}: {exc}"}
        report["results"].append(res)
        print(json.dumps(res), flush=True)
    if a.out:
        tmp = f"{a.out}.tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2)
        os.replace(tmp, a.out)




if __name__ == "__main__":
    main()
