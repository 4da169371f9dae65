"""What every command group shares: the console, the one error handler, and the parsing of options that name a
dataset, a model or a saved run."""

from __future__ import annotations

import contextlib
import functools
import warnings
from enum import StrEnum
from pathlib import Path

import typer
import yaml
from rich.console import Console

from .. import distributed as ddp
from .. import registry
from ..config import ConfigError, dataset_name
from ..errors import SemcollabError
from ..tasks.ranking import DATA_PATH_KEYS, load_ranking_run
from ..textsafe import safe_text

console = Console()
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}  # --section.key=value overrides pass through
SEED = {"min": 0, "max": 2**32 - 1}  # numpy's seed range: a negative or larger seed was a traceback
STAGES = ("valid", "test")


def model_choices(task: str) -> list[str]:
    """The model names of ``task`` (``ranking`` or ``ctr``) that ``--model`` accepts, for its help text."""
    return registry.list_models(task)


def fail(exc: Exception | str) -> None:
    # a message quotes data (ids, titles, paths, lists of keys): markup escaped, control characters made visible
    console.print("[bold red]error:[/bold red] " + safe_text(exc))
    ddp.leaving_on_error()  # under torchrun: leave without waiting for ranks that may be blocked in a collective
    raise typer.Exit(code=2)


def warn(message: str) -> None:
    console.print("[bold yellow]warning:[/bold yellow] " + safe_text(message))


def log(message: object) -> None:
    """The ``log`` of every command: log lines carry paths, dataset names and titles, printed as written (markup
    escaped, ESC / bidi / newline characters made visible), never read as rich markup."""
    console.print(safe_text(message))


def handled(fn):
    """Turn expected user errors into a one-line message and exit code 2 instead of a traceback.

    Expected means a :class:`SemcollabError` (every error semcollab raises on purpose), plus two built-in kinds
    that Python and torch raise themselves on user input: ``OSError`` (an unreadable or unwritable path the user
    gave, a full disk) and ``FloatingPointError`` (NaN scores or losses: a diverged run)."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except SemcollabError as exc:
            fail(exc)
        except FloatingPointError as exc:  # NaN scores/losses: a diverged run (e.g. --train.lr=1e9), not a crash
            fail(f"{exc}: the training diverged; lower train.lr (or check the data) and run again")
        except OSError as exc:  # unreadable/unwritable paths, full disk: the message names the file
            fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else exc)

    return wrapper


@contextlib.contextmanager
def warnings_printed():
    """Python warnings raised inside (an allowed data change, an unused config section) printed as ``warning:``
    lines at once, between the log lines around them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *_: warn(str(message))  # restored when the block ends
        yield


class EmptyText(StrEnum):
    """``--empty-text`` of embed / intents: what items with an empty text get (semcollab.text.TextSettings)."""

    template = "template"  # encoded from a fallback text (the item's other text fields, else "item <id>")
    skip = "skip"  # no text vector (an all-zero row)
    refuse = "refuse"  # stop with an error naming the items


EMPTY_TEXT_HELP = ("items with an empty text: template (encode a fallback text), skip (no text vector) or refuse "
                   "(stop); each case is reported")


def named(value: str | None, option: str) -> str | None:
    """An option naming a model, dataset or template must not be blank: ``--lm ""`` once silently meant the
    default LM and ``--encoder ""`` the current folder."""
    if value is not None and not value.strip():
        raise ConfigError(f"{option} must not be empty")
    return value


def dataset_option(option: str | None, config: Path | None, overrides: list[str], flag: str = "--dataset") -> str | None:
    """The dataset of a command: ``--dataset`` or the config's ``data.name`` (YAML or override); both given and
    different is an error naming both (see :func:`semcollab.config.dataset_name`)."""
    return dataset_name(named(option, flag), config, overrides, flag=flag)


def check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise typer.BadParameter(f"--stage must be valid or test, got {stage!r}")


def run_arg(run_dir: Path | None, args: list[str]) -> tuple[Path | None, list[str]]:
    """Click hands an unknown ``--key=value`` override to an optional positional argument when none is given:
    give it back to the overrides."""
    if run_dir is not None and str(run_dir).startswith("--"):
        return None, [str(run_dir), *args]
    return run_dir, list(args)


def required_run_arg(run_dir: Path, args: list[str]) -> tuple[Path, list[str]]:
    """:func:`run_arg` for a required run folder: an override typed before the folder lands in ``run_dir`` and
    the folder among the extra arguments; take the one argument that is not an override as the folder."""
    found, args = run_arg(run_dir, args)
    if found is not None:
        return found, args
    rest = [a for a in args if not a.startswith("--")]
    if len(rest) != 1:
        raise typer.BadParameter("give one run folder")
    return Path(rest[0]), [a for a in args if a.startswith("--")]


def data_path_args(args: list[str]) -> tuple[list[str], dict]:
    """Split ``--data.path=...`` / ``--data.meta_path=...`` / ``--data.cache_dir=...`` (where a saved run's data
    now is; checked against its recorded fingerprint) off the other extra arguments."""
    rest, paths = [], {}
    for a in args:
        key, eq, value = a.lstrip("-").partition("=")
        if key.startswith("data.") and key[5:] in DATA_PATH_KEYS:
            if not eq or not value:
                raise typer.BadParameter(f"{a}: give the path in one argument, e.g. --{key}=/new/place")
            paths[key[5:]] = value
        else:
            rest.append(a)
    return rest, paths


def load_saved_run(run_dir: Path, allow_data_change: bool, data_paths: dict | None = None):
    """:func:`~semcollab.tasks.ranking.load_ranking_run` with its warnings (an allowed data change) printed as warnings, not Python noise."""
    with warnings_printed():
        return load_ranking_run(run_dir, allow_data_change=allow_data_change, data_paths=data_paths,
                        log=log if data_paths else None)


def check_k(k: int, split) -> None:
    if not 1 <= k <= split.n_items:
        raise typer.BadParameter(f"--k must be between 1 and the catalogue size ({split.n_items} items of "
                                 f"{split.name}), got {k}")


def allow_pickle_arg(args: list[str], command: str) -> bool:
    """``--data.allow_pickle=true|false``, the only extra argument of ``command``: the opt-in to read the run's
    data pickles, given now (the value a saved run's config.yaml records is not honoured)."""
    allow = False
    for a in args:
        key, eq, value = a.lstrip("-").partition("=")
        parsed = yaml.safe_load(value) if eq and value.lower() in ("true", "false") else None
        if key != "data.allow_pickle" or not isinstance(parsed, bool):
            raise typer.BadParameter(f"{command} takes only --data.allow_pickle=true|false besides its options; "
                                     f"got {a!r}")
        allow = parsed
    return allow
