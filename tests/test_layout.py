"""The rules of the layout, checked on the source: the three roles meet only in the core,
and only the wire layer knows python3-gearman."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ROLES = ("send_job_client", "worker_client", "manage_client")
PACKAGES = ("gearman_frame", *ROLES)


def imported_modules(path):
    """Every module a file imports (absolute names; relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module)
    return found


def sources(package):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("role", ROLES)
def test_a_role_package_imports_no_other_role(role):
    others = [r for r in ROLES if r != role]
    offenders = [(str(path.relative_to(ROOT)), module)
                 for path in sources(role) for module in imported_modules(path)
                 if module.split(".")[0] in others]
    assert offenders == []


def test_the_core_imports_no_role():
    offenders = [(str(path.relative_to(ROOT)), module)
                 for path in sources("gearman_frame") for module in imported_modules(path)
                 if module.split(".")[0] in ROLES]
    assert offenders == []


def test_only_the_wire_layer_imports_python3_gearman():
    wire = ROOT / "gearman_frame" / "wire"
    offenders = [str(path.relative_to(ROOT)) for package in PACKAGES
                 for path in sources(package)
                 if wire not in path.parents
                 and any(m.split(".")[0] == "python3_gearman" for m in imported_modules(path))]
    assert offenders == []


def test_no_code_outside_the_wire_layer_reaches_a_private_attribute_of_the_library():
    """``x._name`` on a wire object (requests, connections, clients) is the library's
    inside: only gearman_frame/wire may touch it. Our own objects' ``self._x`` are fine."""
    wire = ROOT / "gearman_frame" / "wire"
    offenders = []
    for package in PACKAGES:
        for path in sources(package):
            if wire in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                        and not node.attr.startswith("__")
                        and isinstance(node.value, ast.Attribute)
                        and node.value.attr in ("wire", "wire_worker", "connection", "job",
                                                "request")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert offenders == []


def test_a_worker_imports_nothing_heavy():
    """The worker's memory budget (24 MiB, python -m bench) has no room for what it does
    not use and costs 2 MiB or more: hashlib or ssl (3.7 and 2.2 MiB of OpenSSL, needed
    only with a key or a tls:// server), prometheus_client (7.7 MiB, only with
    --metrics), or the sender's client (plugins import ``Job`` from its package). Smaller
    modules (typing, sqlite3, subprocess, tempfile) are imported plainly: a lazy import
    stays only where it saves 2 MiB or 20 ms."""
    import subprocess
    import sys
    code = ("import sys, worker_client.runworkers, worker_client.workers, plugins.eg, "
            "plugins.store_numbers; print(sorted({'prometheus_client', "
            "'hashlib', 'hmac', 'ssl', '_ssl', 'send_job_client.clients'} & "
            "set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_port_uses_only_the_protocol_module_of_python3_gearman():
    """Inside the wire layer too, only packets.py imports the library, and only its
    protocol module (command numbers and fields): connections, requests and the worker's
    loop are ours, no class subclasses a library class."""
    users = {}
    for path in sources("gearman_frame"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "python3_gearman"):
                names = [a.name for a in node.names]
                users[str(path.relative_to(ROOT))] = (node.module, names)
            elif isinstance(node, ast.Import) and any(
                    a.name.startswith("python3_gearman") for a in node.names):
                users[str(path.relative_to(ROOT))] = ("import", [a.name for a in node.names])
    assert users == {"gearman_frame/wire/packets.py": ("python3_gearman", ["protocol"])}


#: The longest a module may be (the architecture issue: small modules with one job each).
MAX_MODULE_LINES = 450


def test_no_module_is_over_450_lines():
    long = {str(path.relative_to(ROOT)): n for package in (*PACKAGES, "plugins")
            for path in sources(package)
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def _runtime_imports(path):
    """The modules ``path`` imports when it runs (function-level imports included; those
    under ``if TYPE_CHECKING:`` left out), absolute names, our packages only."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(ROOT).parts[:-1])
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", None) == "TYPE_CHECKING"
               for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[:len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def test_no_import_cycle_not_even_through_a_function_level_import():
    modules = {}
    for package in PACKAGES:
        for path in sources(package):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    # a module's own packages are not edges: ``from . import x`` finds its package
    # already being imported, and runs only x
    graph = {name: {m for m in _runtime_imports(path) if m in modules and m != name
                    and not name.startswith(m + ".")}
             for name, path in modules.items()}
    cycles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"
    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []
