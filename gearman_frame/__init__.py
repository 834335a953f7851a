"""gearman-frame's shared core: config, logging, job envelope, server addresses, the wire
layer over python3-gearman and the local gearmand control.

The three role packages (send_job_client, worker_client, manage_client) build on this
package and never on each other. (The library's NullHandler is set in logs.py, which
every module that logs imports: this file imports nothing, so that a program that needs
one small module of the core does not pay for logging.)
"""
__version__ = "0.1.0"
