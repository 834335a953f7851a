"""The README's Python examples are real code: every name they use is defined."""
import ast
import builtins
import pathlib
import re
import symtable

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def undefined_names(source):
    """Names the top level of ``source`` reads but never imports or assigns."""
    ast.parse(source)  # a syntax error fails here, with its line
    table = symtable.symtable(source, "README", "exec")
    return sorted(s.get_name() for s in table.get_symbols()
                  if s.is_referenced() and not (s.is_assigned() or s.is_imported())
                  and not hasattr(builtins, s.get_name()))


def test_the_readme_has_python_examples():
    assert python_blocks()


def test_every_python_example_of_the_readme_defines_what_it_uses():
    problems = {i: names for i, block in enumerate(python_blocks())
                if (names := undefined_names(block))}
    assert problems == {}
