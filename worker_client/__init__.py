"""The worker role: named multi-threaded workers running commands and Python tasks."""
