"""Why `semcollab serve` scores known users in small blocks: matmul + top-k of 1,000 users against an item matrix,
in blocks of B users, float32 and (for comparison) bfloat16 scores.

    python benchmarks/bench_score_blocks.py [--items 12102] [--dim 64] [--users 1000] [--threads 1]

Random vectors of the shape of a served run (Beauty SASRec: 12,101 items + padding, dim 64). Prints users/s per
block size: a block whose scores fit the core's L2 cache is masked and top-k'ed before it is evicted."""

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=12102)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    users, items = torch.randn(a.users, a.dim), torch.randn(a.items, a.dim)
    print(f"{a.users} users x {a.items} items x dim {a.dim}, {a.threads} thread(s)")
    print("| scores | block (users) | block MiB | ms per 1,000 users | users/s |\n|---|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        u, m = users.to(dtype), items.to(dtype)
        for block in (8, 16, 21, 32, 64, 256, a.users):
            def run(u=u, m=m, block=block):
                for s in range(0, a.users, block):
                    sc = u[s:s + block] @ m.T
                    sc[:, 0] = -torch.inf
                    sc.topk(10, dim=1)
            run()
            t = time.perf_counter()
            for _ in range(a.repeats):
                run()
            dt = (time.perf_counter() - t) / a.repeats
            mib = block * a.items * dtype.itemsize / 2**20
            print(f"| {str(dtype)[6:]} | {block} | {mib:.2f} | {1e6 * dt / a.users:.1f} | {a.users / dt:,.0f} |")


if __name__ == "__main__":
    main()
