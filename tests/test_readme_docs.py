"""README.md and docs/studies/ cannot drift from the CLI or the files: every `semcollab <command>` they name
exists, and every relative link (and its #anchor in a Markdown file) resolves."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs" / "studies").glob("*.md"))]
# screenshots written by the `serve` and `report` branches of issue 30: expected to exist once merged
EXPECTED_IMAGES = ["docs/images/serve.png", "docs/images/report.png"]


def _cli_commands() -> tuple[set[str], dict[str, set[str]]]:
    """The visible top-level commands of the CLI and the visible subcommands of each group, read from the click
    command typer builds (what ``--help`` lists), in this process: one import instead of one process per group."""
    import typer.main

    from semcollab.cli import app

    root = typer.main.get_command(app)  # a click group (typer ships its own click: duck-typed here)
    ctx = root.context_class(root)

    def visible(group) -> dict:
        return {n: c for n in group.list_commands(ctx) if not (c := group.get_command(ctx, n)).hidden}

    top = visible(root)
    return set(top), {n: set(visible(c)) for n, c in top.items() if hasattr(c, "list_commands")}


def _code(text: str) -> str:
    """Fenced blocks and inline code spans: where commands are written."""
    blocks = [re.sub(r"(^|\s)#.*$", "", b, flags=re.M) for b in re.findall(r"```.*?```", text, re.S)]  # no comments
    return "\n".join(blocks + re.findall(r"`[^`\n]+`", re.sub(r"```.*?```", "", text, flags=re.S)))


def named_commands(text: str) -> set[tuple[str, ...]]:
    found = set()
    for m in re.finditer(r"(?<![\w./-])semcollab ([a-z][\w-]*)(?: ([a-z][\w-]*)(?=[\s`]|$))?", _code(text)):
        found.add(tuple(w for w in m.groups() if w))
    return found


def test_every_named_command_exists():
    top, groups = _cli_commands()
    groups = {g: subs for g, subs in groups.items() if subs}
    missing = []
    for path in DOCS:
        for words in sorted(named_commands(path.read_text(encoding="utf-8"))):
            if words[0] not in top:
                missing.append(f"{path.relative_to(ROOT)}: semcollab {words[0]}")
            elif words[0] in groups and len(words) > 1 and words[1] not in groups[words[0]]:
                missing.append(f"{path.relative_to(ROOT)}: semcollab {' '.join(words)}")
    assert not missing, "commands named in the docs that the CLI does not have:\n" + "\n".join(missing)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_relative_links_resolve():
    broken = []
    for path in DOCS:
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve()
            if not dest.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no heading with that anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_links_the_studies_results_reliability_and_screenshots():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in ["docs/studies/", "docs/results.md", "docs/reliability.md", *EXPECTED_IMAGES]:
        assert f"]({target}" in text, f"README.md does not link {target}"
    assert {"saerec.md", "complementarity.md", "lm-ctr.md", "reaemb.md", "id-baselines.md", "benchmarks.md"} <= {
        p.name for p in (ROOT / "docs" / "studies").glob("*.md")}


def test_screenshots_exist():
    # fails until the serve and report branches (docs/images/*.png) are merged
    missing = [p for p in EXPECTED_IMAGES if not (ROOT / p).is_file()]
    assert not missing, f"screenshots the README embeds are missing: {missing}"
