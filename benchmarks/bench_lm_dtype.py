"""One causal-LM forward in float32 vs bfloat16 on this machine (does the CPU's bf16 support pay?).

    python benchmarks/bench_lm_dtype.py --lm smollm2-135m --threads 2 --batch 32 --tokens 96 --repeats 3

Random token ids (the cost does not depend on them); one warm-up call, then the mean of ``repeats`` timed
calls with hidden states returned, as the ReaEmb table does. Prints JSON (seconds per call and the ratio)."""

import argparse
import json
import time

import torch

from semcollab.lm.load import load_causal_lm

ap = argparse.ArgumentParser()
ap.add_argument("--lm", default="smollm2-135m")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--tokens", type=int, default=96)
ap.add_argument("--repeats", type=int, default=3)
args = ap.parse_args()
torch.set_num_threads(args.threads)
ids = torch.randint(0, 1000, (args.batch, args.tokens), generator=torch.Generator().manual_seed(0))
out = {"lm": args.lm, "threads": args.threads, "batch": args.batch, "tokens": args.tokens, "repeats": args.repeats}
for dtype in ("float32", "bfloat16"):
    model, _ = load_causal_lm(args.lm, dtype=dtype)
    with torch.no_grad():
        model(input_ids=ids)
        t = time.perf_counter()
        for _ in range(args.repeats):
            model(input_ids=ids, output_hidden_states=True)
    out[f"seconds_{dtype}"] = round((time.perf_counter() - t) / args.repeats, 3)
out["speedup_bf16"] = round(out["seconds_float32"] / out["seconds_bfloat16"], 2)
print(json.dumps(out))
