"""Fixtures: real gearmand processes on free loopback ports, never a mock.

* ``gearmand``: one server (builtin queue) for the test.
* ``make_gearmand``: a factory for several servers (multi-server tests).
* ``restartable_gearmand``: SQLite-queue server that can be SIGKILLed and restarted on
  the same port and file (fault tests).

If gearmand is not installed the suite fails under ``CI=true`` and skips otherwise; so
do the tests marked ``needs_tool("gearman")`` (a tool of gearman-tools) when that tool
is missing: only those tests, never a whole module.
"""
import os
import shutil
import uuid

import pytest

from gearman_frame.errors import ServerControlError
from gearman_frame.daemons.gearmand import QUEUE_BUILTIN, QUEUE_SQLITE, LocalGearmand, find_gearmand, free_port

_PORT_TRIES = 5


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_tool(name): the test runs the command NAME "
                                       "(from gearman-tools); skipped without it, a failure "
                                       "under CI=true")


def pytest_collection_modifyitems(config, items):
    _missing_tools(items)
    if find_gearmand():
        return
    if os.environ.get("CI") == "true":
        raise pytest.UsageError("gearmand is not installed (apt-get install gearman-job-server)")
    skip = pytest.mark.skip(reason="gearmand is not installed (apt-get install gearman-job-server)")
    for item in items:
        if "needs_gearmand" in item.keywords or _uses_server(item):
            item.add_marker(skip)


def _missing_tools(items):
    """Skip (or, under CI=true, fail) the tests whose ``needs_tool`` command is missing."""
    for item in items:
        for mark in item.iter_markers("needs_tool"):
            tool = mark.args[0]
            if shutil.which(tool) is not None:
                continue
            why = f"the command {tool!r} is not installed (apt-get install gearman-tools)"
            if os.environ.get("CI") == "true":
                raise pytest.UsageError(why)
            item.add_marker(pytest.mark.skip(reason=why))


def _uses_server(item):
    return bool({"gearmand", "make_gearmand", "restartable_gearmand"} & set(item.fixturenames))


def start_on_free_port(data_dir, queue=QUEUE_BUILTIN, extra_args=()):
    """Start a gearmand on a port the kernel found free; retry if another process won it."""
    for _ in range(_PORT_TRIES):
        server = LocalGearmand(data_dir, port=free_port(), queue=queue, extra_args=extra_args)
        try:
            server.start()
            return server
        except ServerControlError:
            if server.process is None or server.process.poll() is None:
                raise
    raise RuntimeError(f"no free port for gearmand after {_PORT_TRIES} tries")


@pytest.fixture
def make_gearmand(tmp_path):
    started = []

    def make(queue=QUEUE_BUILTIN, extra_args=()):
        server = start_on_free_port(tmp_path / f"gearmand{len(started)}", queue, extra_args)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop(timeout=3)


@pytest.fixture
def gearmand(make_gearmand):
    return make_gearmand()


@pytest.fixture
def restartable_gearmand(make_gearmand):
    return make_gearmand(queue=QUEUE_SQLITE)


@pytest.fixture
def func_name(request):
    """A Gearman function name no other test uses."""
    return f"t_{request.node.name[:40]}_{uuid.uuid4().hex[:8]}".replace("[", "_").replace("]", "_")


def _plugin_folder(folder, module, text):
    """``folder`` holding the plugin ``module`` (its source ``text``): a pythonpath."""
    folder.mkdir()
    (folder / f"{module}.py").write_text(text)
    return folder


@pytest.fixture
def plugin_dir(tmp_path):
    """A folder holding the ``recordtasks`` plugin (tests/client_helpers.RECORD_TASKS)."""
    from .client_helpers import RECORD_TASKS
    return _plugin_folder(tmp_path / "plugins_here", "recordtasks", RECORD_TASKS)


@pytest.fixture
def start_workers(tmp_path):
    """Factory: start a real `runworkers` process; every one is stopped at teardown."""
    from .worker_helpers import WorkerProcess

    started = []

    def start(servers, functions, ready=True, **kwargs):
        name = kwargs.setdefault("name", f"w{len(started)}")
        worker = WorkerProcess(tmp_path / f"worker-{name}-{len(started)}", servers, functions,
                               **kwargs)
        started.append(worker)
        return worker.wait_ready() if ready else worker

    yield start
    for worker in started:
        worker.kill()


@pytest.fixture
def perl_gearmand(tmp_path):
    """The Perl job server (Debian gearman-server) on a free port; skipped where it is not
    installed, a failure under CI=true."""
    from .perl_server import PerlJobServer, find_perl_gearmand

    if find_perl_gearmand() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the Perl job server is not installed (apt-get install gearman-server)")
        pytest.skip("the Perl job server is not installed (apt-get install gearman-server)")
    server = PerlJobServer(tmp_path / "perl-gearmand.log")
    yield server
    server.stop()


#: Tasks for the supervised-fleet tests (the ``plugin`` fixture's ``fleettasks``).
FLEET_PLUGIN = '''
import os, time
from gearman_frame.tasks import task

HELD = []

@task("whoami")
def whoami():
    return os.getpid()

@task("nap")
def nap(seconds):
    time.sleep(seconds)
    return os.getpid()

@task("crash")
def crash(path):
    with open(path, "a") as handle:
        handle.write("x")
    if len(open(path).read()) <= 3:
        os._exit(70)  # the process dies mid-job, three times
    return os.getpid()

@task("steps")
def steps(count):
    from gearman_frame.tasks import progress
    for done in range(1, count + 1):
        time.sleep(0.6)
        progress(done, count)
    return count

@task("hog")
def hog(mib):
    HELD.append(bytearray(mib * 2 ** 20))  # kept: a leak
    return os.getpid()
'''


@pytest.fixture
def plugin(tmp_path):
    """A folder holding the ``fleettasks`` plugin (FLEET_PLUGIN): pass it as pythonpath."""
    return _plugin_folder(tmp_path / "plugin", "fleettasks", FLEET_PLUGIN)


def _postgres_or_skip():
    from gearman_frame.daemons.postgres import find_bin
    if find_bin("initdb") and find_bin("pg_ctl"):
        return
    why = "PostgreSQL is not installed (apt-get install postgresql)"
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def start_postgres():
    """A throwaway PostgreSQL cluster on a free loopback port (retried if the port is won
    by another process meanwhile)."""
    from gearman_frame.daemons.postgres import PostgresCluster
    _postgres_or_skip()
    for _ in range(_PORT_TRIES):
        cluster = PostgresCluster(free_port())
        try:
            return cluster.start()
        except RuntimeError:
            cluster.destroy()
    raise RuntimeError("could not start PostgreSQL on a free port")


@pytest.fixture(scope="session")
def postgres_cluster():
    """One PostgreSQL cluster for the session (each test gets its own database)."""
    cluster = start_postgres()
    yield cluster
    cluster.destroy()


@pytest.fixture
def postgres_url(postgres_cluster):
    """A fresh, empty database of the session's cluster: its ``postgresql://`` URL."""
    import psycopg
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_cluster.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_cluster.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def own_postgres():
    """A cluster of the test's own, which it may stop, kill and start again."""
    cluster = start_postgres()
    yield cluster
    cluster.destroy()


@pytest.fixture
def redis_server():
    """A Redis server of the test's own on a free loopback port (nothing saved)."""
    from gearman_frame.daemons.redis import RedisServer
    if shutil.which("redis-server") is None:
        why = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    server = RedisServer(free_port()).start()
    yield server
    server.stop()
