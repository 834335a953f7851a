"""Bounds on what one job may bring in, so one hostile or mistaken job cannot exhaust a
host's memory or disk. Each is named where it is enforced."""

#: Largest job payload (bytes) a dump line may carry back into a queue.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
