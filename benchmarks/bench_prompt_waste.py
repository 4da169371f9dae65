"""How much of an LM-CTR pass over the CoLLM ML-1M rows is shared prefix or padding (issue 32's profile items).

Two savings were proposed for the CPU passes: compute the key/values of the instruction prefix every prompt shares
once per batch, and cut padding. Both are bounded by token counts, which need only the tokenizer: this script
tokenizes every row's prompt (TALLRec's text prompt and SeLLa-Rec's prompt with its three soft tokens, history
``--history`` titles as CoLLM uses) and reports the longest token prefix shared by all prompts of a split and the
padded / real token ratio of batches drawn at random, length-bucketed (training) and longest-first (scoring).
Prompts are tokenized as the models tokenize them (titles cut to 60 characters, the oldest titles dropped past
``max_length`` = 256 tokens).

    python benchmarks/bench_prompt_waste.py --models smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b \\
        --out benchmarks/results/prompt_waste.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from semcollab.lm.batching import length_bucketed_batches, longest_first_batches


def common_prefix(rows: list[list[int]]) -> int:
    """Length of the longest token prefix every row shares."""
    first = rows[0]
    n = len(first)
    for r in rows[1:]:
        m = min(n, len(r))
        k = 0
        while k < m and r[k] == first[k]:
            k += 1
        n = k
        if n == 0:
            break
    return n


def padding_ratio(lengths: np.ndarray, batches) -> float:
    """Padded tokens / real tokens over ``batches`` (each padded to its longest row)."""
    padded = sum(len(b) * int(lengths[np.asarray(b)].max()) for b in batches)
    return padded / float(lengths.sum())


def measure(name: str, split, history: int, train_batch: int, score_batch: int, max_length: int = 256,
            title_chars: int = 60) -> dict:
    from transformers import AutoTokenizer

    from semcollab.lm import SOFT_TOKENS
    from semcollab.lm.load import _resolve
    from semcollab.methods.lm_ctr.prompts import SELLA_MOVIE, TALLREC_MOVIE

    tok = AutoTokenizer.from_pretrained(_resolve(name))
    tok.add_special_tokens({"additional_special_tokens": list(SOFT_TOKENS)})
    titles = [t[:title_chars] if t else t for t in split.titles]
    out: dict = {"model": name}
    for label, template in (("tallrec", TALLREC_MOVIE), ("sellarec", SELLA_MOVIE)):
        res = {}
        for part_name in ("train", "test"):
            part = split.parts[part_name]
            t0 = time.perf_counter()
            prompts = [template.render(history=", ".join(titles[i] for i in h if i > 0) or "(none)",
                                       title=titles[int(item)]) for h, item in zip(part.history, part.items)]
            ids = tok(prompts)["input_ids"]
            lengths = np.asarray([min(len(x), max_length) for x in ids])
            prefix = common_prefix(ids)
            rng = np.random.default_rng(0)
            order = rng.permutation(len(ids))
            random_train = [order[i:i + train_batch] for i in range(0, len(order), train_batch)]
            res[part_name] = {
                "rows": len(ids), "tokenize_seconds": round(time.perf_counter() - t0, 2),
                "tokens_mean": round(float(lengths.mean()), 1), "tokens_median": float(np.median(lengths)),
                "tokens_max": int(max(len(x) for x in ids)), "rows_over_max_length": int(sum(len(x) > max_length
                                                                                            for x in ids)),
                "tokens_total": int(lengths.sum()),
                "shared_prefix_tokens": prefix,
                "shared_prefix_text": tok.decode(ids[0][:prefix]),
                "shared_prefix_share": round(prefix / float(lengths.mean()), 4),
                f"padding_ratio_random_batch{train_batch}": round(padding_ratio(lengths, random_train), 4),
                f"padding_ratio_bucketed_batch{train_batch}": round(
                    padding_ratio(lengths, length_bucketed_batches(lengths, train_batch, 0, 0)), 4),
                f"padding_ratio_longest_first_batch{score_batch}": round(
                    padding_ratio(lengths, longest_first_batches(lengths, score_batch)), 4),
            }
        out[label] = res
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b")
    ap.add_argument("--history", type=int, default=10)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--score-batch", type=int, default=16)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    from semcollab.config import DataConfig
    from semcollab.data import load_ctr
    from semcollab.data.ctr import prepare_ctr

    split = prepare_ctr(load_ctr(DataConfig(name="collm-ml-1m")), a.history)
    res = {"dataset": "collm-ml-1m", "history": a.history,
           "results": [measure(m, split, a.history, a.train_batch, a.score_batch) for m in a.models.split(",")]}
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
