"""Reading a user's files safely: sniffing what a file really is (gzip, Parquet, zip by their magic bytes),
text checks that name the file and line, CSV / TSV / Parquet tables, and the path checks every source shares."""

from __future__ import annotations

import codecs
import csv
import errno
import gzip
import io
import os
import warnings
import zlib
from pathlib import Path

import pandas as pd

from ...errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"


def symlink_loop(path: Path) -> bool:
    """Whether ``path`` (or a folder on the way to it) is a symbolic link that leads back to itself: ``exists()``
    says False for it, so without this check a loop would be reported as "not found"."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    except ValueError:  # a NUL byte in the path
        return False
    return False


def _check_present(path: Path, missing: str) -> None:
    """Raise a DataError naming ``path``: a symlink loop as such, anything else absent with ``missing``."""
    if symlink_loop(path):
        raise DataError(f"{path}: symlink loop (a symbolic link on this path points back to itself); fix the link "
                        "or give the real path")
    raise DataError(missing)


def check_dataset_name(name: str, kind: str) -> str:
    """``name`` of ``<kind>:<name>`` names a file or folder *inside* its data folder and the cache: no path
    separator, no ``..``, no absolute path, no NUL, not empty. A DataError names the name and the allowed form."""
    bad = (not name or "/" in name or "\\" in name or "\0" in name or ".." in name
           or os.path.isabs(name) or any(ord(c) < 32 for c in name))
    if bad:
        raise DataError(f"dataset name {kind}:{name!r} is not allowed: the part after '{kind}:' must be a plain "
                        "file name such as Beauty or ml-100k (letters, digits, '-', '_', '.'; no '/', '\\', '..', "
                        "absolute path or control character); point data.path at the files instead")
    return name


def check_file(path: Path) -> Path:
    """``path`` must be an existing regular file (a folder in its place is a DataError naming it)."""
    path = Path(path)
    if not path.exists():
        _check_present(path, f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, but a file is expected here")
    if not path.is_file():
        raise DataError(f"{path} is not a regular file")
    return path


def check_dir(directory: Path, expected: str) -> Path:
    """``directory`` must be an existing folder (a file in its place is a DataError naming it)."""
    directory = Path(directory)
    if not directory.exists():
        _check_present(directory, f"folder not found: {directory} (expected a folder holding {expected})")
    if not directory.is_dir():
        raise DataError(f"{directory} is a file, not a folder; point data.path at the folder holding {expected}")
    return directory


def magic_bytes(path: Path) -> bytes:
    """The first bytes of ``path``; an empty file is a DataError."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None
    if not head:
        raise DataError(f"{path}: the file is empty")
    return head


def sniff_compression(path: Path) -> str | None:
    """``"gzip"`` when the content is gzip data, whatever the file is called (sniffed, not guessed from .gz)."""
    return "gzip" if magic_bytes(path).startswith(GZIP_MAGIC) else None


def scan_text(path: Path, encoding: str = "utf-8") -> None:
    """Stream the (possibly gzip) file once and reject what a text reader would choke on: bytes that are not
    ``encoding``, NUL bytes (binary data), corrupt gzip data, and content that is empty or only blank.
    Every error names the file and the 1-based line."""
    comp = sniff_compression(path)
    opener = gzip.open if comp == "gzip" else open
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    line, blank = 1, True
    try:
        with opener(path, "rb") as fh:
            while True:
                block = fh.read(1 << 20)
                try:
                    text = decoder.decode(block, final=not block)
                except UnicodeDecodeError as exc:
                    at = line + exc.object[: exc.start].count(b"\n")
                    raise DataError(
                        f"{path}: not {encoding.upper()} text: byte {exc.object[exc.start]:#04x} at line {at}; "
                        f"re-save the file as {encoding.upper()}"
                    ) from None
                nul = text.find("\x00")
                if nul >= 0:
                    at = line + text[:nul].count("\n")
                    raise DataError(f"{path}: binary data (a NUL byte) at line {at}; expected a text file")
                line += text.count("\n")
                blank = blank and not text.strip()
                if not block:
                    break
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: gzip data is corrupt or truncated ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None
    if blank:
        raise DataError(f"{path}: the file is empty (no data, only blank lines)" if line > 1 else f"{path}: the file is empty")


def open_text(path: Path, encoding: str = "utf-8"):
    """Open a text file, transparently decompressing gzip content (sniffed by its magic bytes)."""
    if sniff_compression(path) == "gzip":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding)
    return open(path, encoding=encoding)


def read_text(path: Path, encoding: str = "utf-8") -> str:
    scan_text(path, encoding)
    with open_text(path, encoding) as fh:
        return fh.read()


def read_csv(path: Path, encoding: str = "utf-8", **kw) -> pd.DataFrame:
    """``pd.read_csv`` that turns every way a file can be unreadable into a DataError naming it.

    Rows with more fields than the header are an error (pandas would otherwise silently shift the
    columns, using the first as the index); gzip content is read whatever the file is called."""
    scan_text(path, encoding)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, compression=sniff_compression(path), encoding=encoding, index_col=False, **kw)
    except pd.errors.ParserWarning as exc:
        raise DataError(f"{path}: rows have more fields than the header ({exc}); check the delimiter and quoting") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (no header)") from None
    except (pd.errors.ParserError, csv.Error, UnicodeError, ValueError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot parse the file: {exc}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None


def read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError/... for damaged files
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None


_TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def read_table(path: Path) -> pd.DataFrame:
    """A CSV/TSV/Parquet file as a DataFrame. CSV/TSV cells are read as text exactly as written (no type
    inference, no NA guessing: an empty cell is ``''``), so ids like ``007`` survive; gzip content is
    read whatever the file is called, and Parquet content is recognised by its magic bytes."""
    path = check_file(Path(path))
    head = magic_bytes(path)
    suf = "".join(path.suffixes).lower()
    if head.startswith(PARQUET_MAGIC):
        return read_parquet(path)
    if suf.endswith(".parquet"):
        raise DataError(f"{path}: not a Parquet file (it does not start with the PAR1 magic bytes)")
    if head.startswith(ZIP_MAGIC):
        raise DataError(f"{path}: this is a zip archive; extract the table (or gzip it) first")
    base = suf[:-3] if suf.endswith(".gz") else suf
    sep = next((v for k, v in _TABLE_SEPARATORS.items() if base.endswith(k)), None)
    if sep is None:
        raise DataError(f"{path}: unknown table format {suf!r}; use .csv, .tsv or .parquet")
    return read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def require_table_columns(df: pd.DataFrame, columns, path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if not missing:
        return
    hint = ""
    if len(df.columns) == 1:
        seps = [c for c in (";", "\t", ",", "|") if c in str(df.columns[0])]
        if seps:
            hint = (f"; the header is a single column containing {seps[0]!r}: is the file separated by "
                    f"{seps[0]!r}? .csv files must use ',' and .tsv files tabs")
    raise DataError(f"{path}: missing column(s) {missing}; found columns {list(df.columns)}{hint}")


def text_column(series: pd.Series) -> pd.Series:
    """Item-table values as text: missing -> '', everything else ``str(value)`` (bytes decoded)."""
    def conv(v):
        if v is None or (isinstance(v, float) and v != v) or v is pd.NA or v is pd.NaT:
            return ""
        if isinstance(v, bytes):
            return v.decode("utf-8", "backslashreplace")
        return str(v)

    return series.reset_index(drop=True).astype(object).map(conv).astype(str)


def find_shared() -> Path | None:
    """The project's ``shared/`` asset folder (``$SEMCOLLAB_SHARED``, or ``../shared`` of cwd/repo)."""
    cands = []
    if os.environ.get("SEMCOLLAB_SHARED"):
        cands.append(Path(os.environ["SEMCOLLAB_SHARED"]))
    cands += [Path.cwd().parent / "shared", Path(__file__).resolve().parents[5] / "shared"]
    for c in cands:
        if (c / "data").is_dir():
            return c
    return None


def shared_file(rel: str) -> Path:
    """``rel`` inside the shared/ asset folder; a DataError when there is none."""
    shared = find_shared()
    if shared is None:
        raise DataError(f"cannot find the shared/ asset folder for {rel}; set data.path or SEMCOLLAB_SHARED")
    return shared / rel
