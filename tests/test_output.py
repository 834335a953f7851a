"""Faithful output: a command's stdout and stderr come back whole up to the function's
output_limit, and a result that was cut says so, with the whole sizes."""
import json

from .client_helpers import client_config, sendjob

FUNCTIONS = {"emit": {"shell": "head -c {size} /dev/zero | tr '\\0' a; "
                               "head -c 7 /dev/zero | tr '\\0' e >&2",
                      "output_limit": "1MiB"}}


def test_output_comes_back_whole_up_to_the_limit_and_a_cut_says_so(gearmand, start_workers,
                                                                   tmp_path):
    start_workers([gearmand.address], FUNCTIONS)
    path, _config = client_config(tmp_path, [gearmand.address], timeout=30)
    whole = sendjob(path, "run", "emit", "size=500000", "--json")
    result = json.loads(whole.stdout)
    assert whole.returncode == 0 and result["stdout"] == "a" * 500_000
    assert (result["stdout_bytes"], result["stderr_bytes"], result["truncated"]) == \
        (500_000, 7, False)
    cut = sendjob(path, "run", "emit", "size=3000000", "--json")
    result = json.loads(cut.stdout)
    assert cut.returncode == 0 and result["stdout"] == "a" * 1024 * 1024
    assert (result["stdout_bytes"], result["truncated"]) == (3_000_000, True)
    plain = sendjob(path, "run", "emit", "size=3000000")
    assert plain.returncode == 0 and len(plain.stdout) == 1024 * 1024
    warning = plain.stderr.strip().splitlines()
    assert len(warning) == 1 and "stdout 3000000 bytes" in warning[0]
    assert "output_limit" in warning[0]
