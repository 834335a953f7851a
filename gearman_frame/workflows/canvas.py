"""Signatures and workflows: ``f.s(...)``, ``chain``, ``group`` and ``chord``, as in
Celery's canvas, laid out as a plan a worker can carry on without a coordinator.

A plan is a list of stages run one after another; a stage is one step or a group of
steps run side by side. ``chain(a, b, c)`` is three stages, ``group(a1, a2)`` one stage
of two steps, ``chord(group(...), total)`` the group's stage and then the callback's.
A step is the next stage's input: one step's outcome, or a group's outcomes in order.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class Signature:
    """One step: a function (a configured one or a Python task) and its arguments."""

    function: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def step(self) -> dict:
        """The step as a plan carries it: ``{"f", "args", "kwargs"}``."""
        return {"f": self.function, "args": list(self.args), "kwargs": dict(self.kwargs)}


def signature(function: str, *args: Any, **kwargs: Any) -> Signature:
    """A signature of a function by name (a configured command function, or a task
    from another codebase)."""
    if not isinstance(function, str) or not function:
        raise ValueError(f"a step needs a function name, got {function!r}")
    return Signature(function, tuple(args), dict(kwargs))


class Function:
    """A configured function by name, so that ``Function("resize").s(path=p)`` reads like
    a task's ``resize.s(path=p)``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        return signature(self.name, *args, **kwargs)


@dataclass(frozen=True)
class Chain:
    """Steps (or groups, or chords) one after another."""

    items: tuple
    on_failure: Signature | None = None


@dataclass(frozen=True)
class Group:
    """Steps run side by side; the next stage gets their outcomes in this order."""

    items: tuple
    on_failure: Signature | None = None


@dataclass(frozen=True)
class Chord:
    """A group, then a callback that gets the members' outcomes in the group's order."""

    group: Group
    callback: "Flow"
    on_failure: Signature | None = None


Flow = Union[Signature, Chain, Group, Chord]


def chain(*items: Any, on_failure: Signature | None = None) -> Chain:
    """``chain(a.s(x=1), b.s(), c.s())``: each step gets the outcome of the one before."""
    flat = tuple(items[0]) if len(items) == 1 and _is_iterable(items[0]) else items
    return Chain(flat, on_failure)


def group(*items: Any, on_failure: Signature | None = None) -> Group:
    """``group(a.s(i) for i in items)``: steps run side by side."""
    flat = tuple(items[0]) if len(items) == 1 and _is_iterable(items[0]) else items
    return Group(flat, on_failure)


def chord(members: Any, callback: Flow, on_failure: Signature | None = None) -> Chord:
    """``chord(group(...), total.s())``: the callback runs once, after every member."""
    return Chord(members if isinstance(members, Group) else group(members), callback,
                 on_failure)


def _is_iterable(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, Signature))


@dataclass(frozen=True)
class Plan:
    """A workflow laid out: its kind (chain, group or chord), its stages (lists of step
    dicts) and the step run once if a step fails for good."""

    kind: str
    stages: list
    on_failure: dict | None = None

    @property
    def steps(self) -> int:
        return sum(len(stage) for stage in self.stages)


def plan_of(flow: Flow) -> Plan:
    """The plan of a workflow; ValueError (what is wrong, where) for a workflow of
    nothing, a group inside a group, or something that is not a step."""
    stages = _stages(flow, "the workflow")
    failure = getattr(flow, "on_failure", None)
    if failure is not None and not isinstance(failure, Signature):
        raise ValueError(f"on_failure must be one step (f.s(...)), got {failure!r}")
    kind = {Chain: "chain", Group: "group", Chord: "chord"}.get(type(flow), "chain")
    return Plan(kind, stages, failure.step() if failure is not None else None)


def _stages(flow: Any, where: str) -> list:
    if isinstance(flow, Signature):
        return [[flow.step()]]
    if isinstance(flow, Chain):
        if not flow.items:
            raise ValueError(f"{where} is a chain of nothing: give it at least one step")
        stages: list = []
        for number, item in enumerate(flow.items, 1):
            stages += _stages(item, f"step {number} of the chain")
        return stages
    if isinstance(flow, Group):
        if not flow.items:
            raise ValueError(f"{where} is a group of nothing: give it at least one step")
        for number, item in enumerate(flow.items, 1):
            if not isinstance(item, Signature):
                raise ValueError(f"member {number} of the group is a "
                                 f"{type(item).__name__.lower()}: a group's members are "
                                 "single steps (f.s(...))")
        return [[item.step() for item in flow.items]]
    if isinstance(flow, Chord):
        return _stages(flow.group, where) + _stages(flow.callback, "the chord's callback")
    raise ValueError(f"{where}: expected a step (f.s(...)), chain, group or chord, got "
                     f"{type(flow).__name__}")
