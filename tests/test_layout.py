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
    """The worker's memory budget (24 MiB, python -m bench) has no room for modules it
    does not use: sqlite3 (1 MiB, the sender's outbox), hashlib or ssl (3.7 and 2.2 MiB
    of OpenSSL, needed only with a key or a tls:// server), or the sender's client
    (plugins import ``Job`` from its package). typing (0.7 MiB) is allowed: checked
    types are worth it (the architecture issue's rule: a lazy import only where it saves
    2 MiB or 20 ms)."""
    import subprocess
    import sys
    code = ("import sys, worker_client.runworkers, worker_client.workers, plugins.eg, "
            "plugins.store_numbers; print(sorted({'sqlite3', 'subprocess', "
            "'tempfile', 'hashlib', 'hmac', 'ssl', '_ssl', 'send_job_client.clients'} & "
            "set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
