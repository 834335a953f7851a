"""Plugin scripts: each module here defines jobs that ``sendjob plugin NAME`` sends."""
