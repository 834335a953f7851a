"""The docs hold no example that nothing checks: every command or code block says which
test runs it, or why it is not run; every config block is a config the validator takes;
every test the Guarantees page cites exists; every Python block parses and defines what
it uses. (`mkdocs build --strict` itself runs in scripts/test.sh.)"""
import ast
import builtins
import os
import pathlib
import re
import symtable

import pytest

from gearman_frame.config import load_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"(?:<!-- example: (?P<mark>.*?) -->\n)?```(?P<lang>[a-z-]+)\n(?P<code>.*?)```",
                   re.S)
#: Blocks that are commands or programs: each must say what runs it.
RUNNABLE = ("sh", "python", "php", "php-signed", "perl")


def blocks():
    return [(page.relative_to(ROOT), m["lang"], m["mark"], m["code"]) for page in PAGES
            for m in FENCE.finditer(page.read_text())]


def test_every_command_and_program_says_what_runs_it():
    unmarked = [(str(p), lang, code.splitlines()[0]) for p, lang, mark, code in blocks()
                if lang in RUNNABLE and not mark]
    assert unmarked == []


def test_every_named_test_exists_and_every_reason_is_given():
    for page, _lang, mark, _code in blocks():
        if not mark:
            continue
        if mark.startswith("not run:"):
            assert len(mark) > len("not run: ") + 10, (page, mark)
            continue
        assert mark.startswith("run by "), (page, mark)
        for ref in mark[len("run by "):].split(", "):
            path, _, name = ref.partition("::")
            assert (ROOT / path).is_file(), (page, ref)
            if name:
                assert re.search(rf"^def {re.escape(name)}\(", (ROOT / path).read_text(),
                                 re.M), (page, ref)


@pytest.mark.parametrize("page, index", [
    (str(p), i) for i, (p, lang, mark, _c) in enumerate(blocks())
    if lang == "yaml" and not mark])
def test_every_config_block_is_a_config_the_validator_takes(tmp_path, page, index):
    code = blocks()[index][3]
    path = tmp_path / "config.yaml"
    path.write_text(code)
    load_config(str(path), environ={}, connect=False)  # a ConfigError fails the test


def test_every_python_block_parses_and_defines_what_it_uses():
    problems = {}
    for page, lang, _mark, code in blocks():
        if lang != "python":
            continue
        ast.parse(code)
        table = symtable.symtable(code, str(page), "exec")
        undefined = sorted(s.get_name() for s in table.get_symbols()
                           if s.is_referenced() and not (s.is_assigned() or s.is_imported())
                           and not hasattr(builtins, s.get_name()))
        if undefined:
            problems[str(page)] = undefined
    assert problems == {}


def test_every_test_the_guarantees_page_cites_exists():
    text = (ROOT / "docs" / "guarantees.md").read_text()
    cited = set(re.findall(r"`(test_[a-z0-9_]+)(?:\*|\.\.\.)?`", text))
    assert len(cited) > 30
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    defined = set(re.findall(r"^def (test_[a-z0-9_]+)", sources, re.M))
    missing = sorted(name for name in cited
                     if not any(d == name or d.startswith(name) for d in defined))
    assert missing == []


def test_the_readme_is_one_short_page_with_its_two_commands_first():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    first = text.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[:2] for line in first] == [["bash", "scripts/demo.sh"],
                                                   ["bash", "scripts/test.sh"]]
    assert os.path.isfile(ROOT / "scripts" / "demo.sh")
