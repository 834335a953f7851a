"""Command templates: ``{field}`` placeholders filled from a job's kwargs.

Only plain ``{name}`` placeholders are allowed (no attribute access, indexing, format
specs or conversions), so a template can never reach into Python objects, and every
field a job must supply is known when the config is loaded.

A value that begins an argument (a field at the start of an argv entry or of a shell word)
may not begin with ``-``: the program would read it as an option (``ls {path}`` with
``path=--version``, ``sort {file}`` with ``file=--output=/etc/x``). A function lets
chosen fields through with ``allow_options: [field, ...]``.
"""
from __future__ import annotations

import functools
import shlex
import string
from typing import Iterable, Sequence

_FORMATTER = string.Formatter()


class TemplateError(ValueError):
    """Raised when a template is malformed or a job's fields do not fit it."""


@functools.lru_cache(maxsize=256)  # templates come from the config: a handful, used per job
def template_fields(template: str) -> tuple[str, ...]:
    """Return the field names of one template string, in order of first use."""
    fields = []
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as err:
        raise TemplateError(f"a template with balanced braces ({err})") from err
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise TemplateError(f"'{{{name}}}' is not a plain '{{name}}' field")
        if name not in fields:
            fields.append(name)
    return tuple(fields)


def fields_of(templates: Iterable[str]) -> set[str]:
    """Return the set of field names used across several template strings."""
    found: set[str] = set()
    for template in templates:
        found.update(template_fields(template))
    return found


def check_kwargs(needed: Iterable[str], kwargs: dict) -> None:
    """Raise TemplateError unless ``kwargs`` supplies exactly the ``needed`` fields."""
    if kwargs.keys() == set(needed):
        return
    missing = sorted(set(needed) - set(kwargs))
    extra = sorted(set(kwargs) - set(needed))
    if missing:
        raise TemplateError(f"missing template field(s): {', '.join(missing)}")
    if extra:
        raise TemplateError(f"field(s) not in the template: {', '.join(extra)}")


#: Characters after which a shell template starts a new word.
_WORD_BREAKS = " \t\n;&|()<>"


@functools.lru_cache(maxsize=256)
def leading_fields(templates: Iterable[str], shell: bool) -> frozenset[str]:
    """The fields that begin an argument: at the start of an argv entry, or (``shell``)
    at the start of the template or after a word break."""
    breaks = _WORD_BREAKS if shell else ""
    leading = set()
    for template in templates:
        for index, (literal, name, _spec, _conv) in enumerate(_FORMATTER.parse(template)):
            if name is not None and (literal[-1:] in tuple(breaks) if literal
                                     else index == 0):
                leading.add(name)
    return frozenset(leading)


def check_options(values: dict[str, str], leading: Iterable[str],
                  allowed: Iterable[str]) -> None:
    """Raise TemplateError for a value that begins an argument with ``-``."""
    for name in leading:
        if name not in allowed and values[name].startswith("-"):
            raise TemplateError(
                f"field {name!r} begins an argument and its value starts with '-' (it would "
                f"be read as an option); list it in allow_options to permit that")


def _text(value: object) -> str:
    if isinstance(value, (dict, list, tuple, set)) or value is None:
        raise TemplateError(f"template values must be text or numbers, got {type(value).__name__}")
    text = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
    try:  # a command argument is bytes: a lone surrogate ("\ud800") has none
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise TemplateError("template values must be text UTF-8 can carry (a lone "
                            "surrogate cannot be a command argument)") from None
    if "\0" in text:
        raise TemplateError("template values cannot contain a NUL byte (a command argument "
                            "ends at the first one)")
    return text


def render_argv(argv: Sequence[str], kwargs: dict, allow_options: Iterable[str] = (),
                ) -> list[str]:
    """Fill an argv template; each value stays exactly one literal argument.

    (``str.format_map`` is safe here: ``fields_of`` has checked that every field of
    every part is a plain name, so nothing but a lookup in ``values`` happens.)"""
    check_kwargs(fields_of(argv), kwargs)
    values = {k: _text(v) for k, v in kwargs.items()}
    check_options(values, leading_fields(tuple(argv), False), allow_options)
    return [part.format_map(values) for part in argv]


def render_shell(template: str, kwargs: dict, allow_options: Iterable[str] = ()) -> str:
    """Fill a shell template with every value shell-quoted."""
    check_kwargs(fields_of([template]), kwargs)
    texts = {k: _text(v) for k, v in kwargs.items()}
    check_options(texts, leading_fields((template,), True), allow_options)
    return template.format_map({k: shlex.quote(v) for k, v in texts.items()})
