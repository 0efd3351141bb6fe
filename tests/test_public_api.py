"""The public API cannot trap: every exported name is the documented object, whatever was imported first."""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap

import synthlung

# Runs in a fresh interpreter. Third-party libraries are imported first (they are
# not what can trap); then, for every ordered pair (a, b) of public names, a
# forked child that has imported nothing of synthlung does `from synthlung import a`,
# then `from synthlung import b`, and checks both against what the export table
# promises. Forking keeps ~900 fresh interpreters affordable.
_PAIRS = textwrap.dedent("""
    import importlib, os, sys
    import numpy, scipy.ndimage, numba, nibabel, nrrd, pydicom, typer, rich  # noqa: F401
    for extra in ("torch", "monai", "dask.distributed"):
        try:
            importlib.import_module(extra)
        except ImportError:
            pass
    assert not any(m == "synthlung" or m.startswith("synthlung.") for m in sys.modules)

    def expected(name):
        import synthlung
        return getattr(importlib.import_module("synthlung." + synthlung._EXPORTS[name]), name)

    def check(first, second):
        ns = {}
        exec(f"from synthlung import {first}", ns)
        exec(f"from synthlung import {second}", ns)
        import synthlung
        for name in (first, second):
            got = ns[name] if name in ns else None
            if got is not expected(name) or getattr(synthlung, name) is not got:
                return f"{first} then {second}: synthlung.{name} is {got!r}"
        return None

    import synthlung._version  # the package __init__ only; no submodule of the export table
    names = [n for n in __import__("synthlung").__all__ if n != "__version__"]
    for m in [m for m in sys.modules if m.startswith("synthlung")]:
        del sys.modules[m]
    bad = []
    for a in names:
        for b in names:
            if a == b:
                continue
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                try:
                    msg = check(a, b) or ""
                except Exception as exc:  # an import that fails is a trap too
                    msg = f"{a} then {b}: {type(exc).__name__}: {exc}"
                os.write(w, msg.encode())
                os._exit(0)
            os.close(w)
            msg = os.read(r, 4096).decode()
            os.close(r)
            os.waitpid(pid, 0)
            if msg:
                bad.append(msg)
    print(len(names) * (len(names) - 1), "pairs")
    print("\\n".join(bad))
    sys.exit(1 if bad else 0)
""")


def test_every_pair_of_public_names_in_both_orders():
    result = subprocess.run([sys.executable, "-c", _PAIRS], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    n = len(synthlung.__all__) - 1
    assert f"{n * (n - 1)} pairs" in result.stdout


def _exported_names() -> set[str]:
    names = set(synthlung.__all__)
    for info in pkgutil.walk_packages(synthlung.__path__, "synthlung."):
        if info.ispkg:
            names |= set(getattr(importlib.import_module(info.name), "__all__", ()))
    return names


def test_no_module_shares_a_name_with_an_export():
    exported = _exported_names()
    modules = {info.name.rsplit(".", 1)[1] for info in pkgutil.walk_packages(synthlung.__path__, "synthlung.")}
    assert modules & exported == set()


def test_exports_are_the_documented_objects():
    for name in synthlung.__all__:
        if name == "__version__":
            continue
        obj = getattr(synthlung, name)
        assert not isinstance(obj, type(synthlung)), name
        assert obj.__name__ == name
