"""``python -m semcollab``: the command line."""

from .cli import main

main()
