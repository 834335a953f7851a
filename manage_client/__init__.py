"""The admin role: status, workers, queue clearing, worker shutdown, local gearmand."""
