"""A second no-op task for side-by-side runs on one gearmand: a signed worker serves it
while an unsigned one serves ``reverse`` (a signed worker refuses unsigned jobs)."""
from gearman_frame.tasks import task


@task("reverse_signed")
def reverse_signed(text):
    return text[::-1]
