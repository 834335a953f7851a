"""The gate a job passes before anything is rendered, spawned or run: with a key
configured, only jobs signed by an accepted key, fresh, and not seen before."""
import logging
import threading

from gearman_frame.signing import UNSIGNED

log = logging.getLogger(__name__)


class Gate:
    """Checks jobs against a Keyring and counts the ones it refuses."""

    def __init__(self, keyring):
        self.keyring = keyring
        self.refused = 0
        self._lock = threading.Lock()

    def why_refused(self, function, request, payload, allow_unsigned=False):
        """None if the job may run; else why not (for the log, never for the sender).
        ``request`` is the parsed envelope of ``payload`` (None for a raw payload). A
        function with ``allow_unsigned`` takes raw and unsigned jobs, never badly signed
        ones."""
        if request is None:
            why = None if allow_unsigned else UNSIGNED
        else:
            why = self.keyring.admit(function, payload, request.fields)
            if why == UNSIGNED and allow_unsigned:
                why = None
        if why is not None:
            with self._lock:
                self.refused += 1
        return why

    def release(self, request):
        """Let a job that was left unanswered (gearmand hands it out again) run then."""
        if request is not None and request.fields and "sig" in request.fields:
            self.keyring.release(request.fields)
