#!/usr/bin/env bash
# Install semcollab into the current Python environment, with the torch build that fits the machine.
#
#   scripts/install.sh [auto|cpu|gpu] [--dry-run]      (default: auto)
#
#   cpu   the CPU build of torch, by the route PyTorch documents:
#           pip install "torch<range>" --index-url https://download.pytorch.org/whl/cpu
#         (on macOS plain PyPI, whose wheels there are CPU builds). Plain PyPI on Linux is a CUDA build (~3 GB).
#   gpu   the default build from PyPI (on Linux the CUDA build): pip install "torch<range>"
#   auto  gpu when `nvidia-smi` runs, else cpu
# then: pip install -e ".[dev,llm,serve,test-serve]" (SEMCOLLAB_EXTRAS changes the extras, e.g. llm for a user install).
# <range> is torch's requirement in pyproject.toml. --dry-run prints the commands instead of running them.
#
# A torch that is already installed, in the range and of the chosen kind (CPU: torch.version.cuda is None) is kept:
# the torch step is skipped, nothing is downloaded; one of the other kind is uninstalled first. Two settings, for machines that cannot reach the PyTorch index
# (CI in a workplace that reaches only the package registries, .ci/run):
#   SEMCOLLAB_TORCH_INDEX=<url>        another index for the torch step; `configured` = pip's own configured indexes
#   SEMCOLLAB_TORCH_SPEC=<requirement> the torch requirement to install instead of the range (e.g. torch==2.13.0)
# After the torch step of a cpu install the build is checked: a CUDA build is an error, not a silent 3 GB install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CPU_INDEX=https://download.pytorch.org/whl/cpu

mode=auto
dry=0
for arg in "$@"; do
    case "$arg" in
        auto|cpu|gpu) mode=$arg ;;
        --dry-run) dry=1 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument '$arg' (expected auto, cpu, gpu or --dry-run)" >&2; exit 2 ;;
    esac
done

run() {
    printf '+'; printf ' %q' "$@"; echo
    if [ "$dry" -eq 0 ]; then "$@"; fi
}

if [ "$mode" = auto ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then mode=gpu; else mode=cpu; fi
    echo "auto: chose $mode ($( [ "$mode" = gpu ] && echo "nvidia-smi runs" || echo "no working nvidia-smi"))"
fi

# torch's requirement in pyproject.toml, e.g. "torch>=2.2,<2.15"
range=$("$PY" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(next(d.replace(" ", "") for d in deps if re.match(r"torch\b", d)))
PY
)
spec=${SEMCOLLAB_TORCH_SPEC:-$range}

# what is installed: "cpu" / "gpu" when a torch in the range is installed (its kind), else "none"
installed=$("$PY" - "$range" <<'PY' 2>/dev/null || echo none
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
except ImportError:
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.version import Version
try:
    v = Version(version("torch"))
except PackageNotFoundError:
    print("none"); sys.exit()
if Version(v.base_version) not in SpecifierSet(sys.argv[1][len("torch"):]):
    print("none"); sys.exit()
import torch
print("cpu" if torch.version.cuda is None and getattr(torch.version, "hip", None) is None else "gpu")
PY
)

if [ "$installed" = "$mode" ]; then
    echo "torch: a $mode build in $range is installed already; keeping it"
else
    if [ "$installed" != none ]; then  # the other kind in the range: pip would keep it, so remove it first
        echo "torch: the installed build is a $installed build; replacing it with a $mode build"
        run "$PY" -m pip uninstall -y torch
    fi
    index=()
    case "${SEMCOLLAB_TORCH_INDEX:-}" in
        configured) ;;
        "") if [ "$mode" = cpu ] && [ "$(uname -s)" != Darwin ]; then index=(--index-url "$CPU_INDEX"); fi ;;
        *) index=(--index-url "$SEMCOLLAB_TORCH_INDEX") ;;
    esac
    run "$PY" -m pip install "$spec" "${index[@]}"
    if [ "$mode" = cpu ] && [ "$dry" -eq 0 ]; then
        cuda=$("$PY" -c 'import torch; print(torch.version.cuda or "")')
        if [ -n "$cuda" ]; then
            echo "error: the cpu install got a CUDA build of torch (CUDA $cuda) from ${SEMCOLLAB_TORCH_INDEX:-$CPU_INDEX};" \
                 "point SEMCOLLAB_TORCH_INDEX / SEMCOLLAB_TORCH_SPEC at a CPU build" >&2
            exit 1
        fi
    fi
fi
run "$PY" -m pip install -e ".[${SEMCOLLAB_EXTRAS:-dev,llm,serve,test-serve}]"
