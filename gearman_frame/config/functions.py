"""``functions:`` and ``plugins:``: what workers serve, configured commands and Python tasks."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..delays import DURATION_HELP, MAX_DELAY, parse_duration
from ..retry import DEFAULT_BACKOFF, DEFAULT_RETRIES, DEFAULT_RETRY_DELAY, RetryPolicy
from ..templates import TemplateError, fields_of
from .defaults import (DEFAULT_FUNCTION_TIMEOUT, DEFAULT_OUTPUT_LIMIT, MAX_FUNCTION_NAME_BYTES,
                       RESERVED_PREFIX)
from .rules import Rules

FUNCTION_KEYS = ("command", "shell", "stdin", "raw_shell", "timeout", "retries",
                  "retry_delay", "backoff", "maxqueue", "cwd", "env", "allow_options",
                  "output_limit", "allow_unsigned", "dead_letter", "progress",
                  "concurrency", "rate")
#: ``rate: "10/s"``: starts per second, minute or hour.
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
#: ``progress:`` names for the usual progress lines; anything else is a pattern.
PROGRESS_PATTERNS = {"percent": r"^\s*(\d+(?:\.\d+)?)\s*%\s*$",
                     "fraction": r"^\s*(\d+)\s*/\s*(\d+)\s*$"}

@dataclass(frozen=True)
class FunctionConfig:
    """One entry of ``functions:``; a Gearman function served by workers."""

    name: str
    command: tuple | None = None
    shell: str | None = None
    stdin: str | None = None
    raw_shell: bool = False
    timeout: float = DEFAULT_FUNCTION_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    maxqueue: int | None = None
    cwd: str | None = None
    env: dict = field(default_factory=dict)
    #: Fields whose value may begin an argument with '-' (read as an option).
    allow_options: frozenset = frozenset()
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    #: With a key configured: take raw and unsigned jobs anyway (interop, on purpose).
    allow_unsigned: bool = False
    #: ``dead_letter: {requeue_after, max_requeues}``: a job that failed for good goes back
    #: to the function after this many seconds, up to this many times (0: never).
    requeue_after: float = 0.0
    max_requeues: int = 0
    #: A command's stdout lines this pattern matches are its progress (WORK_STATUS):
    #: one group is a percentage, two are done and total (None: seconds elapsed).
    progress: str | None = None
    #: Fleet-wide caps (kept in the job ledger): at most ``concurrency`` jobs running at
    #: once across every worker, and starts at most ``rate`` per second (``rate_text``
    #: as configured). None: no cap.
    concurrency: int | None = None
    rate: float | None = None
    rate_text: str | None = None

    @property
    def capped(self) -> bool:
        return self.concurrency is not None or self.rate is not None

    @property
    def fields(self) -> set[str]:
        """The ``{field}`` names a job must supply (empty for a Python task)."""
        if self.command:
            return fields_of(self.command)
        if self.shell:
            return fields_of([self.shell])
        return set()

    @property
    def is_external(self) -> bool:
        """True if the function runs a process rather than a Python @task."""
        return bool(self.command or self.shell or self.raw_shell)


class FunctionRules(Rules):
    def plugins(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.error("plugins", "a list of module names", value)
        for i, item in enumerate(value):
            ok = isinstance(item, str) and all(p.isidentifier() for p in item.split("."))
            if not ok:
                raise self.error(f"plugins[{i}]", "a dotted module name", item)
        return tuple(value)

    def functions(self, raw: object) -> dict[str, FunctionConfig]:
        if not isinstance(raw, dict):
            raise self.error("functions", "a mapping of function names", raw)
        return {self.function_name(name): self.function(name, spec or {})
                for name, spec in raw.items()}

    def function_name(self, name: object) -> str:
        key = f"functions.{name}"
        if not isinstance(name, str) or not name or "\0" in name:
            raise self.error(key, "a non-empty function name", name)
        if name.startswith(RESERVED_PREFIX):
            raise self.error(key, f"a name not starting with '{RESERVED_PREFIX}' (reserved)",
                             name)
        if len(name.encode("utf-8")) > MAX_FUNCTION_NAME_BYTES:
            raise self.error(key, f"a name of at most {MAX_FUNCTION_NAME_BYTES} bytes",
                             got=f"{len(name.encode('utf-8'))} bytes")
        return name

    def function(self, name: str, raw: object) -> FunctionConfig:
        key = f"functions.{name}"
        raw = self.mapping(raw, key, FUNCTION_KEYS)
        command = raw.get("command")
        if command is not None:
            if (not isinstance(command, list) or not command
                    or not all(isinstance(a, str) for a in command)):
                raise self.error(f"{key}.command", "a non-empty list of strings (argv)",
                                 command)
            command = tuple(command)
        shell = self.optional(self.string, raw.get("shell"), f"{key}.shell")
        if command and shell:
            raise self.error(key, "either 'command' or 'shell', not both",
                             got="both are set")
        for sub, templates in (("command", command), ("shell", [shell] if shell else None)):
            if templates:
                try:
                    fields_of(templates)
                except TemplateError as err:
                    raise self.error(f"{key}.{sub}", str(err), got="a bad template") from err
        raw_shell = self.boolean(raw.get("raw_shell", False), f"{key}.raw_shell")
        if raw_shell and (command or shell):
            raise self.error(f"{key}.raw_shell", "no 'command' or 'shell' beside it",
                             got="both set")
        try:
            retry = RetryPolicy(
                retries=self.integer(raw.get("retries", DEFAULT_RETRIES), f"{key}.retries"),
                delay=self.number(raw.get("retry_delay", DEFAULT_RETRY_DELAY),
                                  f"{key}.retry_delay"),
                backoff=self.number(raw.get("backoff", DEFAULT_BACKOFF), f"{key}.backoff", 1),
            )
        except ValueError as err:  # pragma: no cover - the checks above come first
            raise self.error(key, str(err), got="a bad retry policy") from err
        env = raw.get("env") or {}
        if not isinstance(env, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise self.error(f"{key}.env", "a mapping of strings to strings", env)
        allow = raw.get("allow_options") or []
        fields = fields_of(command or ([shell] if shell else []))
        if not isinstance(allow, list) or not all(isinstance(a, str) and a in fields
                                                  for a in allow):
            raise self.error(f"{key}.allow_options",
                             f"a list of this function's template fields "
                             f"({', '.join(sorted(fields)) or 'none'})", allow)
        return FunctionConfig(
            name=name,
            command=command,
            shell=shell,
            stdin=self.optional(self.string, raw.get("stdin"), f"{key}.stdin", ("data",)),
            raw_shell=raw_shell,
            timeout=self.number(raw.get("timeout", DEFAULT_FUNCTION_TIMEOUT), f"{key}.timeout"),
            retry=retry,
            maxqueue=self.optional(self.integer, raw.get("maxqueue"), f"{key}.maxqueue"),
            cwd=self.optional(self.string, raw.get("cwd"), f"{key}.cwd"),
            env=dict(env),
            allow_options=frozenset(allow),
            output_limit=self.size(raw.get("output_limit", DEFAULT_OUTPUT_LIMIT),
                                   f"{key}.output_limit"),
            allow_unsigned=self.boolean(raw.get("allow_unsigned", False),
                                        f"{key}.allow_unsigned"),
            **self.dead_letter(raw.get("dead_letter"), f"{key}.dead_letter"),
            progress=self.progress(raw.get("progress"), f"{key}.progress",
                                   bool(command or shell or raw_shell)),
            concurrency=self.optional(self.integer, raw.get("concurrency"),
                                      f"{key}.concurrency", 1, 100_000),
            rate=self.rate(raw.get("rate"), f"{key}.rate"),
            rate_text=raw.get("rate") if isinstance(raw.get("rate"), str) else None,
        )

    def rate(self, raw: object, key: str) -> float | None:
        """``rate: "N/s"`` (or ``/m``, ``/h``; N > 0) -> starts per second."""
        if raw is None:
            return None
        found = _RATE.match(raw) if isinstance(raw, str) else None
        if found is None or float(found.group(1)) <= 0:
            raise self.error(key, 'a rate like "10/s", "30/m" or "100/h" (a number > 0 per '
                                  "second, minute or hour)", raw)
        return float(found.group(1)) / _PER[found.group(2)]

    def progress(self, raw: object, key: str, external: bool) -> str | None:
        """``progress: percent | fraction | REGEX`` (two groups: done, total) -> a pattern."""
        if raw is None:
            return None
        expected = ("percent, fraction or a regular expression with two groups "
                    "(done, total)")
        if not isinstance(raw, str) or not raw:
            raise self.error(key, expected, raw)
        if not external:
            raise self.error(key, "a command or shell beside it (a Python task reports "
                             "progress with progress(done, total))", raw)
        pattern = PROGRESS_PATTERNS.get(raw, raw)
        try:
            groups = re.compile(pattern).groups
        except re.error as err:
            raise self.error(key, expected, raw, got=f"got {raw!r} ({err})") from None
        if raw not in PROGRESS_PATTERNS and groups != 2:
            raise self.error(key, expected, raw, got=f"got {raw!r} with {groups} group(s)")
        return pattern

    def dead_letter(self, raw: object, key: str) -> dict:
        """``dead_letter: {requeue_after: DURATION, max_requeues: N}`` (both, or neither)."""
        if raw is None:
            return {}
        raw = self.mapping(raw, key, ("requeue_after", "max_requeues"))
        if "requeue_after" not in raw or "max_requeues" not in raw:
            raise self.error(key, "both requeue_after and max_requeues",
                             got=f"only {', '.join(raw) or 'nothing'}")
        try:
            after = parse_duration(raw["requeue_after"])
        except ValueError:
            after = 0.0
        if not 0 < after <= MAX_DELAY:
            raise self.error(f"{key}.requeue_after", f"{DURATION_HELP}, > 0 and at most a "
                             "year", raw["requeue_after"])
        return {"requeue_after": after,
                "max_requeues": self.integer(raw["max_requeues"], f"{key}.max_requeues", 1,
                                             1000)}
