"""``logging:``, ``server:``, ``web:``, ``schedules:`` and ``scheduler:``: the log, and what
``runadmin server``, ``runadmin web`` and ``sendjob scheduler`` run."""
from __future__ import annotations

from dataclasses import dataclass

from ..sending.schedules import check_schedules
from .defaults import (DEFAULT_JOB_RETRIES, DEFAULT_SCHEDULER_LEAD, LOG_FORMATS, LOG_LEVELS,
                       POOL_NAME)
from .rules import Rules

@dataclass(frozen=True)
class LoggingConfig:
    """``logging:`` — level, optional rotating file, text or JSON lines."""

    level: str = "INFO"
    file: str | None = None
    format: str = "text"


@dataclass(frozen=True)
class ServerConfig:
    """``server:`` — how ``runadmin server`` runs the local gearmand."""

    job_retries: int = DEFAULT_JOB_RETRIES
    #: gearmand's persistent queue: sqlite (a file in the data dir), builtin (memory),
    #: postgresql://... or redis://HOST:PORT (a standby gearmand can take it over).
    queue: str = "sqlite"


@dataclass(frozen=True)
class WebConfig:
    """``web:`` — `runadmin web`'s token file (resolved beside the config; needed to
    listen anywhere but loopback)."""

    token_file: str | None = None


@dataclass(frozen=True)
class SchedulerConfig:
    """``scheduler:`` — how `sendjob scheduler` shares its schedules with the others:
    the lease group (schedulers of one group fire each occurrence once), its state file
    (beside the config) and how far ahead it queues occurrences (seconds; a scheduler
    that takes over within this time neither skips nor repeats one)."""

    group: str = "default"
    state: str = "var/schedules.json"
    lead: float = DEFAULT_SCHEDULER_LEAD


class ServiceRules(Rules):
    def logging(self, raw: object) -> LoggingConfig:
        raw = self.mapping(raw, "logging", ("level", "file", "format"))
        level = raw.get("level", "INFO")
        level = self.string(level.upper() if isinstance(level, str) else level,
                            "logging.level", LOG_LEVELS)
        return LoggingConfig(
            level=level,
            file=self.optional(self.string, raw.get("file"), "logging.file"),
            format=self.string(raw.get("format", "text"), "logging.format", LOG_FORMATS),
        )

    def server(self, raw: object) -> ServerConfig:
        raw = self.mapping(raw, "server", ("job_retries", "queue"))
        queue = self.string(raw.get("queue", "sqlite"), "server.queue")
        if queue not in ("sqlite", "builtin") and not queue.startswith(
                ("postgresql://", "postgres://", "redis://")):
            raise self.error("server.queue", "sqlite, builtin, postgresql://USER@HOST:PORT/DB "
                             "or redis://HOST:PORT", queue)
        return ServerConfig(job_retries=self.integer(raw.get("job_retries", DEFAULT_JOB_RETRIES),
                                                     "server.job_retries", 1), queue=queue)

    def web(self, raw: object) -> WebConfig:
        raw = self.mapping(raw, "web", ("token_file",))
        token_file = self.optional(self.string, raw.get("token_file"), "web.token_file")
        if token_file is not None:
            token_file = self.beside_config(token_file)
        return WebConfig(token_file=token_file)

    def schedules(self, raw: object) -> tuple:
        if not raw:
            return ()
        return check_schedules(self, raw)

    def scheduler(self, raw: object) -> SchedulerConfig:
        raw = self.mapping(raw, "scheduler", ("group", "state", "lead"))
        group = self.string(raw.get("group", "default"), "scheduler.group")
        if not POOL_NAME.fullmatch(group):
            raise self.error("scheduler.group", "a name of letters, digits and _", group)
        return SchedulerConfig(
            group=group,
            state=self.string(raw.get("state", "var/schedules.json"), "scheduler.state"),
            lead=self.number(raw.get("lead", DEFAULT_SCHEDULER_LEAD), "scheduler.lead", 1.0))
