"""Two identical no-op tasks for side-by-side runs on one gearmand: one side's worker
serves one, the other side's the other, and a second half swaps them, so whatever
favours one function or one worker falls on both sides alike (a signed worker refuses
unsigned jobs, so the two sides cannot share a function)."""
from gearman_frame.tasks import task


@task("reverse_a")
def reverse_a(text):
    return text[::-1]


@task("reverse_b")
def reverse_b(text):
    return text[::-1]
