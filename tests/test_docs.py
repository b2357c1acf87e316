"""The README and docs/ point at files that exist: relative links, and the scripts, configs, results and
pages they name in inline code (``benchmarks/pgmc.py``, ``pgmc_seeds_..._pooled.json``, ``configs/...toml``).

A renamed benchmark result or config that the text still names fails here, not in a reader's shell. So does
an example command (in a command's ``--help`` or a code block of the pages) whose options no longer parse.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_DIRS = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", ".ruff_cache"}
# Inline code naming a file the repository must hold (outputs of example commands use other suffixes).
NAMED_FILE = re.compile(r"`([^`\s]+\.(?:py|toml|json|md|sh))`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _repo_files() -> tuple[set[str], set[str]]:
    """(relative paths, base names) of every file under the repository, build and cache folders left out."""
    paths, names = set(), set()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        rel = Path(dirpath).relative_to(ROOT)
        for f in filenames:
            paths.add((rel / f).as_posix())
            names.add(f)
    return paths, names


def _is_pattern(token: str) -> bool:
    """Globs, placeholders and abbreviations (``*``, ``<out>``, ``{T}``, ``..._pooled.json``) name no file."""
    return any(c in token for c in "*<>{}") or token.startswith("...")


def _problems(text: str, base: Path) -> tuple[list[str], list[str]]:
    """(links that resolve to no file, named files the repository does not hold) of a page in folder base."""
    paths, names = _repo_files()
    broken = [link for link in LINK.findall(text)
              if not link.startswith(("http://", "https://", "mailto:")) and not (base / link).exists()]
    missing = []
    for token in sorted(set(NAMED_FILE.findall(text))):
        if _is_pattern(token):
            continue
        if "/" in token:
            token_path = token.removeprefix("./")
            if token_path.startswith("../"):  # shared data outside the repository
                continue
            if token_path not in paths and not any(p.endswith("/" + token_path) for p in paths):
                missing.append(token)
        elif token not in names:
            missing.append(token)
    return broken, missing


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_links_and_named_files_exist(page: Path) -> None:
    broken, missing = _problems(page.read_text(encoding="utf-8"), page.parent)
    assert not broken, f"{page.name}: links to missing files: {broken}"
    assert not missing, f"{page.name}: names files the repository does not hold: {missing}"


def test_the_check_sees_missing_files() -> None:
    """Negative control: missing results, configs and pages are reported; existing ones and patterns are not."""
    text = ("see `benchmarks/results/no_such_result.json`, `no_such_config.toml`, [notes](docs/no_such_page.md), "
            "[flows](docs/flows.md), `benchmarks/pgmc.py`, `pgmc.json`, `pgmc_seeds_*.json` and `..._pooled.json`")
    broken, missing = _problems(text, ROOT)
    assert broken == ["docs/no_such_page.md"]
    assert missing == ["benchmarks/results/no_such_result.json", "no_such_config.toml"]


# ------------------------------------------------------------------------------------------- example commands
def _parser():
    """The glassgen command tree with every command's body replaced by a no-op: parsing only."""
    import typer

    from glassgen.cli import app

    root = typer.main.get_command(app)  # a fresh tree each call: the shared app is not touched
    commands, stack = [], [root]
    while stack:
        c = stack.pop()
        commands.append(c)
        subs = getattr(c, "commands", None) or {}
        stack.extend(subs.values())
        if not subs:
            c.callback = lambda **kw: None
    return root, commands


def _command_lines(text: str) -> list[str]:
    """``glassgen ...`` lines of a help text or a page's code blocks (continuations joined, comments and pipes cut)."""
    lines = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.strip().removeprefix("$ ")
        if line.startswith("glassgen ") and "<" not in line:  # not placeholders like `glassgen <command> --help`
            lines.append(re.split(r"\s+#|\s\||\s>|\s&&|;", line)[0])
    return lines


def _parse_problem(root, line: str) -> str | None:
    """None if ``line`` parses (files that do not exist here are fine); else the parser's complaint."""
    try:
        root.main(shlex.split(line)[1:], prog_name="glassgen", standalone_mode=False)
    except SystemExit as exc:  # --help
        return None if exc.code in (0, None) else f"exit {exc.code}"
    except Exception as exc:  # noqa: BLE001 - any parser error is the finding
        return None if "does not exist" in str(exc) else f"{type(exc).__name__}: {exc}"
    return None


def test_example_commands_parse() -> None:
    """Every example in a command's --help and every command in a code block of README.md and docs/ names
    options that exist, with values of the right type."""
    root, commands = _parser()
    examples = [line for c in commands for line in _command_lines(f"{c.help or ''}\n{getattr(c, 'epilog', '') or ''}")]
    blocks = []
    for page in PAGES:
        parts = page.read_text(encoding="utf-8").split("```")
        blocks += [line for block in parts[1::2] for line in _command_lines(block)]
    assert len(examples) >= 40 and len(blocks) >= 20, (len(examples), len(blocks))
    problems = [f"{line}: {msg}" for line in examples + blocks if (msg := _parse_problem(root, line))]
    assert not problems, "\n".join(problems)


def test_the_parse_check_sees_stale_options() -> None:
    """Negative control: an unknown option, a value of the wrong type and an unknown command are reported."""
    root, _ = _parser()
    assert _parse_problem(root, "glassgen md run --model ka3d --T 0.5 --out md.h5") is None
    assert "--bogus" in _parse_problem(root, "glassgen md run --bogus 1")
    assert "number" in _parse_problem(root, "glassgen md run --T warm")
    assert _parse_problem(root, "glassgen no-such-command") is not None
