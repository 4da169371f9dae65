"""The smollm2-135m encoder's GGUF read packed (transformers 5.2x's default where it has a kernel) vs dense
(``lm.load.dense_gguf_kwargs``, what semcollab asks for), on 256 real item texts, fp32 and bf16 policy: 1 - cosine
between the two readings, bf16 against fp32, and the time of each on one thread (docs/results.md 22p).

    semcollab embed --dataset s3rec:Beauty --encoder smollm2-135m --out runs/embed-smollm2
    python experiments/hybrid_s3rec/gguf_check.py runs/embed-smollm2/Beauty/item_texts.jsonl
"""
import json, sys, time
import numpy as np, torch
import semcollab.lm.load as load
import semcollab.text.encoders as enc
torch.set_num_threads(1)
rows = [json.loads(l) for l in open(sys.argv[1])][:256]
texts = [r.get("text") or r.get("item_text") or list(r.values())[-1] for r in rows]
spec = enc.resolve_encoder("smollm2-135m")
dense_kw = load.dense_gguf_kwargs
out = {}
for dtype in ("float32", "bfloat16"):
    for mode in ("dense", "packed"):
        enc.dense_gguf_kwargs = dense_kw if mode == "dense" else (lambda f: {"gguf_file": f})
        e = enc.TextEncoder(spec, device="cpu", dtype=dtype, batch_size=32)
        t = time.perf_counter(); v = e.encode(texts); out[(dtype, mode)] = (v, time.perf_counter() - t)


def one_minus_cos(a: np.ndarray, b: np.ndarray) -> str:
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return f"1-cos max {1 - cos.min():.2e} mean {1 - cos.mean():.2e}"


for dtype in ("float32", "bfloat16"):
    (a, ta), (b, tb) = out[(dtype, "dense")], out[(dtype, "packed")]
    print(f"{dtype}: dense {ta:.1f}s packed {tb:.1f}s; {one_minus_cos(a, b)}")
print(f"fp32 dense vs bf16 packed: {one_minus_cos(out[('float32', 'dense')][0], out[('bfloat16', 'packed')][0])}")
