"""Item-text encoding throughput (items/second) for the offline encoders, plus — on a GPU — the
measured bf16 matmul throughput as a roofline to compare against.

Usage: python benchmarks/bench_embed.py [--dataset ml-100k] [--encoders minilm,smollm2-135m] [--device cpu|cuda]
Prints one JSON object; the embedding cache is bypassed (a fresh temporary cache) so every item is encoded."""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from semcollab.config import DataConfig
from semcollab.data import load_split
from semcollab.text import resolve_encoder
from semcollab.text.encoders import TextEncoder


def matmul_tflops(device: str, dtype=torch.bfloat16, n: int = 8192, reps: int = 20) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--template", default=None, help="default: the dataset's own template")
    ap.add_argument("--encoders", default="minilm,smollm2-135m")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None, help="encode only the first N items")
    a = ap.parse_args()
    split = load_split(DataConfig(name=a.dataset))
    texts = split.render_texts(a.template)
    texts = texts[: a.limit]
    out = {"dataset": a.dataset, "n_items": len(texts), "device": a.device, "threads": torch.get_num_threads(),
           "machine": torch.cuda.get_device_name(0) if a.device == "cuda" else (platform.processor() or platform.machine()),
           "encoders": {}}
    with tempfile.TemporaryDirectory():
        for name in a.encoders.split(","):
            spec = resolve_encoder(name)
            enc = TextEncoder(spec, device=a.device, batch_size=a.batch_size)
            enc.encode(texts[: a.batch_size])  # warm-up
            if a.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            vecs = enc.encode(texts)
            if a.device == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            params = sum(p.numel() for p in (enc.st_model or enc.model).parameters())
            out["encoders"][name] = {"model": spec.name, "params_millions": params / 1e6, "dim": int(vecs.shape[1]),
                                     "dtype": str(enc.dtype).replace("torch.", ""), "seconds": dt,
                                     "items_per_second": len(texts) / dt}
    if a.device == "cuda":
        out["bf16_matmul_tflops"] = matmul_tflops("cuda")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
