"""Task hooks in a real worker: on_retry after each failed attempt that is retried, then
on_success or on_failure, with the job and the result, in order; a hook that raises is
logged and changes nothing."""
import json

from .client_helpers import client_config, sendjob

HOOKED = '''
import json, os
from gearman_frame.tasks import task

def note(kind):
    def hook(job, result):
        with open(job.kwargs["ledger"], "a") as handle:
            handle.write(json.dumps([kind, job.id, job.kwargs["word"], result.status,
                                     result.attempts]) + "\\n")
        if job.kwargs.get("raise_in") == kind:
            raise RuntimeError("the hook broke")
    hook.__name__ = kind
    return hook

@task("flaky_word", on_success=note("success"), on_failure=note("failure"),
      on_retry=note("retry"))
def flaky_word(word, ledger, fail_times=0, raise_in=None):
    counter = f"{ledger}.{word}"
    runs = int(open(counter).read()) if os.path.exists(counter) else 0
    with open(counter, "w") as handle:
        handle.write(str(runs + 1))
    if runs < fail_times:
        raise ValueError(f"failing run {runs + 1}")
    return word
'''


def test_hooks_see_every_retry_then_the_end_and_cannot_change_it(gearmand, start_workers,
                                                                 tmp_path):
    plugins = tmp_path / "plugins_here"
    plugins.mkdir()
    (plugins / "hooked.py").write_text(HOOKED)
    worker = start_workers([gearmand.address],
                           {"flaky_word": {"retries": 3, "retry_delay": 0.01}},
                           plugins=["hooked"], pythonpath=plugins)
    path, _config = client_config(tmp_path / "s", [gearmand.address], timeout=20)
    ledger = tmp_path / "ledger"
    runs = {word: sendjob(path, "run", "flaky_word", f"word={word}", f"ledger={ledger}",
                          *extra, "--json")
            for word, extra in (("a", ["fail_times=2"]), ("b", ["fail_times=9"]),
                                ("c", ["raise_in=success"]))}
    results = {w: json.loads(p.stdout) for w, p in runs.items()}
    calls = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [(kind, word, status, attempts) for kind, _id, word, status, attempts in calls] == [
        ("retry", "a", "failed", 1), ("retry", "a", "failed", 2), ("success", "a", "ok", 3),
        ("retry", "b", "failed", 1), ("retry", "b", "failed", 2), ("retry", "b", "failed", 3),
        ("failure", "b", "failed", 4), ("success", "c", "ok", 1)]
    assert {call[1] for call in calls if call[2] == "a"} == {results["a"]["id"]}
    assert [runs[w].returncode for w in "abc"] == [0, 1, 0]
    assert results["c"]["status"] == "ok" and results["c"]["value"] == "c"
    assert "success hook success raised RuntimeError: the hook broke" in worker.log()
