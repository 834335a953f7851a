"""Retry policy: the one place that decides whether to try again and how long to wait."""
from __future__ import annotations

from dataclasses import dataclass

#: Re-runs after a failed command unless a function says otherwise (like RQ: none).
DEFAULT_RETRIES = 0
#: Seconds before the first re-run.
DEFAULT_RETRY_DELAY = 1.0
#: Each further re-run waits this many times longer than the one before.
DEFAULT_BACKOFF = 2.0
#: No wait between attempts is ever longer than this many seconds.
DEFAULT_MAX_DELAY = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` re-runs after the first attempt, waiting ``delay * backoff**n``."""

    retries: int = DEFAULT_RETRIES
    delay: float = DEFAULT_RETRY_DELAY
    backoff: float = DEFAULT_BACKOFF
    max_delay: float = DEFAULT_MAX_DELAY

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError("retries: please give a whole number >= 0")
        if self.delay < 0:
            raise ValueError("retry_delay: please give a number of seconds >= 0")
        if self.backoff < 1:
            raise ValueError("backoff: please give a factor >= 1")
        if self.max_delay < 0:
            raise ValueError("max_delay: please give a number of seconds >= 0")

    @property
    def attempts(self) -> int:
        """How many times a job runs at most."""
        return self.retries + 1

    def should_retry(self, attempt: int) -> bool:
        """True if a job whose ``attempt``-th run (1-based) failed may run again."""
        return attempt < self.attempts

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failed run (1-based); every backoff
        in gearman-frame (retries, resends, reconnects, the dead-letter spool) is one."""
        try:
            return min(self.max_delay, self.delay * self.backoff ** (attempt - 1))
        except OverflowError:  # a reconnect loop that has run for days
            return self.max_delay
