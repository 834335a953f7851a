"""Tasks for side-by-side runs on one gearmand. Two identical no-op tasks: one side's
worker serves one, the other side's the other, and a second half swaps them, so whatever
favours one function or one worker falls on both sides alike (a signed worker refuses
unsigned jobs, so the two sides cannot share a function). And a number store, plain and
as a batch task of 100."""
from gearman_frame.tasks import task


@task("reverse_a")
def reverse_a(text):
    return text[::-1]


@task("reverse_b")
def reverse_b(text):
    return text[::-1]


@task("store_one")
def store_one(number, path):
    """Store one number: an append to the file per job."""
    with open(path, "a") as handle:
        handle.write(f"{number}\n")
    return number


@task("store_batch", batch={"max": 100, "wait": 0.05})
def store_batch(jobs):
    """Store up to 100 numbers with one append to the file."""
    with open(jobs[0].kwargs["path"], "a") as handle:
        handle.write("".join(f"{job.kwargs['number']}\n" for job in jobs))
    return [job.kwargs["number"] for job in jobs]
