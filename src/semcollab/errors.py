"""Every error semcollab raises on purpose, under one base: the CLI turns a :class:`SemcollabError` into one
``error: ...`` line and exit code 2; anything else is a bug and keeps its traceback.

Each class also keeps the built-in base it had before (``ValueError``, ``KeyError``, ``OSError``, ``RuntimeError``), so
code that caught those still works."""

from __future__ import annotations


class SemcollabError(Exception):
    """Base of every error semcollab raises for bad input, bad files or a run that cannot go on."""


class ConfigError(SemcollabError, ValueError):
    """A config key is unknown, a value has the wrong type, or it lies outside its allowed range."""


class DataError(SemcollabError, ValueError):
    """Raised when input data is malformed: missing columns, NaNs, bad ids, empty histories, ..."""


class UnknownIdError(SemcollabError, KeyError):
    """Raised when a raw user or item id that was never seen in training is asked for at inference."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnknownNameError(ConfigError, KeyError):
    """A model name the registry does not hold (the message lists the registered ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TemplateError(SemcollabError, KeyError, ValueError):
    """A text template that cannot be rendered: unknown column, positional field, unbalanced brackets."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CacheError(SemcollabError, RuntimeError):
    """A cache entry exists but cannot be trusted; ``reason`` says why."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


class OutputError(SemcollabError, OSError):
    """The output folder cannot take the run (read-only, not a folder, or too little free space)."""


class CheckpointMismatchError(SemcollabError, ValueError):
    """A checkpoint holds a run made with other settings or data; it is never silently reused."""


class CheckpointInUseError(CheckpointMismatchError):
    """Another live process owns this resume checkpoint (its lock is held)."""


class AssetError(SemcollabError, RuntimeError):
    pass


class ModelError(SemcollabError, RuntimeError):
    """A registry model could not be fetched, assembled or converted."""


class ModelIntegrityError(ModelError):
    """An assembled file does not have the registry's size or sha256."""


class ModelFolderError(ModelError):
    """A model folder lacks the files a model is loaded from, or holds a damaged one (named in the message)."""


class EncoderOutputError(ModelError):
    """An encoder produced vectors that are all zero or not finite for non-empty texts (nothing is cached).

    ``index`` is the position of the first offending text in the list that was encoded."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


class TrainingIncomplete(SemcollabError, RuntimeError):
    """A step stopped at its time cap; rerunning the same command resumes it from the checkpoint."""


class ReaEmbIncomplete(TrainingIncomplete):
    """A stage stopped at its time cap; the same command continues it from its checkpoint."""


class IntentFileError(SemcollabError, ValueError):
    """A saved intents.json that is unreadable or belongs to another SAE."""


class IncompatibleRunError(SemcollabError, RuntimeError):
    """A saved run's weights do not fit the model this version builds from the run's config."""


class RunFileError(SemcollabError, RuntimeError):
    """A file of a saved run folder is missing, truncated or not what it claims to be."""


class DataChangedError(SemcollabError, RuntimeError):
    """The data a saved run was trained on is no longer what its source files give."""


class DistributedError(SemcollabError, RuntimeError):
    """A multi-process launch that cannot work as asked (a bad ``--nproc``, a task that does not shard)."""


class ReportError(SemcollabError, ValueError):
    """Runs that cannot go in one report (different datasets, a seed counted twice, a folder that is no run)."""


class RequestError(SemcollabError, ValueError):
    """Bad input of one request: ``field`` names it (``body.user_id``), ``input`` the offending values."""

    def __init__(self, field: str, message: str, input=None, status: int = 422):
        super().__init__(message)
        self.field, self.message, self.input, self.status = field, message, input, status
