"""Local daemons the admin (and the tests and bench) start and stop: gearmand with a
persistent queue, and stunnel in front of it for TLS."""
