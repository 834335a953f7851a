"""Progress of a plugin run: a live bar on a terminal, a plain line every 100 jobs otherwise."""
import contextlib
import sys

#: Jobs between two plain progress lines when the output is not a terminal.
PLAIN_EVERY = 100


@contextlib.contextmanager
def progress_display(name, stream, total=None):
    """Yield ``show(report)``, to be called after each finished job."""
    if not stream.isatty():
        def plain(report):
            done = report.ok + report.failed + report.outbox
            if done % PLAIN_EVERY == 0:
                print(f"{name}: {done} done ({report.ok} ok, {report.failed} failed)",
                      file=stream, flush=True)
        yield plain
        return
    # rich.progress: 30 ms of imports, only on a terminal
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn)
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("[green]{task.fields[ok]} ok"),
               TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn()]
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(name, total=total, ok=0, failed=0)

        def live(report):
            bar.update(task, completed=report.ok + report.failed + report.outbox,
                       ok=report.ok, failed=report.failed)
        yield live


class FollowedJob:
    """`sendjob run --follow`: a job's output as it comes and, when stderr is a terminal,
    a bar of the progress its worker reports (rich, started at the first report; the
    output goes on above it). The bar is gone when the job ends."""

    def __init__(self, name, stdout, stderr):
        self.name, self.stdout, self.stderr = name, stdout, stderr
        self.streamed = False
        self.bar = None
        self.task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()

    def output(self, stream, chunk):
        """A piece of the job's stdout (1) or stderr (2), as the worker streamed it."""
        self.streamed = True
        out = self.stdout if stream == 1 else self.stderr
        if self.bar is not None and out.isatty():  # through rich: it stays above the bar
            (sys.stdout if stream == 1 else sys.stderr).write(chunk.decode("utf-8",
                                                                           "replace"))
            return
        out.buffer.write(chunk)
        out.flush()

    def progress(self, done, total):
        """A progress report (WORK_STATUS) of the running job."""
        if not self.stderr.isatty() or total <= 0:
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress,
                                       TaskProgressColumn, TextColumn, TimeElapsedColumn)
            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                TaskProgressColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(file=self.stderr),
                                redirect_stdout=self.stdout.isatty(), redirect_stderr=True,
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.name, total=total)
        if self.task is not None:
            self.bar.update(self.task, completed=done, total=total)
