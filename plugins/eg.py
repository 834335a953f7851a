"""eg: the example plugin (its sending side arrives with `sendjob plugin`).

Tasks defined here with ``@task`` are served by every worker whose config lists
``plugins.eg``.
"""
from gearman_frame.tasks import task


@task("reverse")
def reverse(text):
    """Return ``text`` reversed: the no-op job the benchmarks use."""
    return text[::-1]
