#!/usr/bin/env bash
# Install RecTools 0.19.0 into its own venv on top of the system site-packages, never replacing
# torch / numpy / pandas / scipy there.  Idempotent: re-running only checks.
#
# Why --no-deps for rectools itself: on Python 3.11 its metadata pins numpy<2.0, pandas<3.0 and
# attrs<24, which would shadow the system numpy 2.4 / pandas 3.1 inside the venv (a plain
# `pip install rectools` resolves numpy 1.26.4 + pandas 2.3.3).  The part used here,
# rectools.fast_transformers (UniSRecModel), imports only torch and pytorch_lightning, so we
# install the wheel alone and add pytorch-lightning under a constraints file that pins the
# system torch / numpy / pandas / scipy.
set -euo pipefail
VENV=${RECTOOLS_VENV:-/work/venvs/rectools}
RECTOOLS_VERSION=0.19.0
PL_VERSION=2.5.2   # the newest pytorch-lightning rectools 0.19.0 allows (<=2.5.2)

SYS_PY=${SYS_PY:-python}
if [ ! -x "$VENV/bin/python" ]; then
  "$SYS_PY" -m venv --system-site-packages "$VENV"
fi
CONSTRAINTS="$VENV/system-constraints.txt"
"$SYS_PY" -m pip freeze 2>/dev/null | grep -iE '^(torch|numpy|pandas|scipy)==' > "$CONSTRAINTS"
echo "pinned from the system site-packages:"; cat "$CONSTRAINTS"

PIP="$VENV/bin/pip"
if ! "$VENV/bin/python" -c "import pytorch_lightning" 2>/dev/null; then
  "$PIP" install -c "$CONSTRAINTS" "pytorch-lightning==$PL_VERSION"
fi
if [ "$("$VENV/bin/python" -c 'import rectools; print(rectools.__version__)' 2>/dev/null)" != "$RECTOOLS_VERSION" ]; then
  "$PIP" install --no-deps "rectools==$RECTOOLS_VERSION"
fi

# The venv must still see exactly the system torch / numpy / pandas / scipy.
"$VENV/bin/python" -m pip freeze 2>/dev/null | grep -iE '^(torch|numpy|pandas|scipy)==' | diff - "$CONSTRAINTS"
"$VENV/bin/python" -c "
import numpy, pandas, pytorch_lightning, rectools, scipy, torch
from rectools.fast_transformers import UniSRecModel  # noqa: F401
print('rectools', rectools.__version__, 'pytorch_lightning', pytorch_lightning.__version__, 'torch', torch.__version__,
      'numpy', numpy.__version__, 'pandas', pandas.__version__, 'scipy', scipy.__version__)
"
