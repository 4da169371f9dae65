"""Print one entry of a study's YAML config, for the study's bash run script to read its grid from the config
instead of holding it in arrays: a list one item a line, a mapping one `key<TAB>value` a line (in file order),
a scalar as it is. An empty value prints as an empty string.

Usage: python experiments/study_config.py CONFIG.yaml KEY[.SUBKEY ...]"""

import sys
from pathlib import Path

import yaml


def entry(config: Path, key: str):
    """The value at the dotted ``key`` of ``config``; exits naming the file and key when it is not there."""
    value = yaml.safe_load(config.read_text(encoding="utf-8"))
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise SystemExit(f"{config}: no key {key!r}")
        value = value[part]
    return value


def text(value) -> str:
    return "" if value is None else str(value)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    config = Path(argv[0])
    if not config.is_file():
        raise SystemExit(f"{config}: no such config file")
    value = entry(config, argv[1])
    if isinstance(value, dict):
        lines = [f"{k}\t{text(v)}" for k, v in value.items()]
    elif isinstance(value, list):
        lines = [text(v) for v in value]
    else:
        lines = [text(value)]
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
