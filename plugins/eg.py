"""eg: the example plugin, and the rules every plugin follows.

Run it with ``sendjob plugin eg [--count N] [--word WORD]``: it sends N jobs of the
``reverse`` task and prints each reversed word.

The rules
---------
1. A plugin is a module. ``sendjob plugin NAME`` imports ``plugins/NAME.py``, else any
   importable module of that name (``sendjob plugin mypkg.nightly``).
2. It may define Python tasks with ``@task("name")``. Workers serve them when the module
   is listed under ``plugins:`` in config.yaml (the worker imports it at start). A task
   takes JSON-able arguments and returns a JSON-able value other than None (None and
   bytes are reported as errors); raising fails the job with the error text. Retries for
   a task can be set under ``functions.NAME`` in the config. A task's ``timeout`` is not
   enforced yet (a thread cannot be killed; a command's process group can): keep tasks
   short, or make long work a configured command.
   ``f.put(...)`` and ``f.submit(...)`` send a task through the job client open in the
   calling context (``with JobClient(config):``; ``sendjob plugin`` opens one).
3. ``add_arguments(parser)`` (optional) declares its command-line arguments on an
   argparse parser; without it the plugin gets the raw list of strings.
4. ``jobs(args, config)`` (required) yields the jobs to send, as
   ``Job.of(function, *args, **kwargs)``: a @task name or a configured function (whose
   ``{fields}`` are the kwargs). It receives the parsed arguments and the loaded Config.
   Jobs are sent as they are yielded, many in flight, so a generator may yield millions.
5. ``background = True`` (optional module attribute) sends every job in the background;
   results then are deliveries (handle, or kept in the outbox). With
   ``sendjob plugin NAME --wait [SECONDS]`` and ``client.results`` set, ``on_result``
   and the counts get each job's Result instead, collected from the result channel
   as the jobs finish.
6. ``on_result(job, result)`` (optional) receives each job's Result (``.ok``, ``.status``,
   ``.value`` for tasks, ``.stdout``/``.stderr``/``.exit_code`` for commands, ``.error``)
   as soon as it finishes.
7. ``count(args)`` (optional) returns how many jobs ``jobs`` will yield, so the progress
   bar (shown when stdout is a terminal) can show how far along the run is.
8. If the plugin raises, sending stops, the jobs already sent are still collected, and
   ``sendjob`` exits 1 with the plugin's error and the counts. Exit status is 0 when
   every job succeeded, 1 otherwise.
"""
import logging

from gearman_frame.tasks import task
from send_job_client import Job

log = logging.getLogger(__name__)

WORDS = ("gearman", "frame", "worker", "client", "admin")


@task("reverse")
def reverse(text):
    """Return ``text`` reversed: the no-op job the benchmarks use."""
    return text[::-1]


def add_arguments(parser):
    parser.add_argument("--count", type=int, default=10, help="jobs to send (default 10)")
    parser.add_argument("--word", help="the word to reverse (default: a few in turn)")


def count(args):
    return args.count


def jobs(args, config):
    for i in range(args.count):
        yield Job.of("reverse", args.word or WORDS[i % len(WORDS)])


def on_result(job, result):
    if result.ok:
        log.info("reversed %r -> %r", job.args[0], result.value)
    else:
        log.error("reverse %r failed: %s", job.args[0], result.error)
