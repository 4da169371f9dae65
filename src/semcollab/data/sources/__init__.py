"""Dataset sources, one file per format; each registers itself with ``@register_source`` (semcollab.registry).

Importing this package registers the built-in formats. A new format is one more file with its decorator (here, or
in a plugin module named by ``SEMCOLLAB_PLUGINS``); ``files`` holds the file sniffing and reading they share and
``raw`` what they return."""

from . import amazon, atomic, collm, ml1m, ml100k, s3rec, table  # noqa: F401  (imported to register them)
