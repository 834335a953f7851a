"""Progress of a plugin run: a live bar on a terminal, a plain line every 100 jobs otherwise."""
import contextlib

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
