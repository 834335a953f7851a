"""The sender role: job clients that never lose a job, plugins and the sendjob CLI."""
