"""The public API cannot trap: every exported name is the documented object, whatever was imported first."""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap

import synthlung

# Runs in a fresh interpreter. Third-party libraries are imported first (they are
# not what can trap); then, per public name ``a``, a forked child that has imported
# nothing of synthlung does ``from synthlung import a``, checks it against the export
# table, and looks at what that import left bound in the package. A later
# ``from synthlung import b`` (the pair a, b) can only go wrong through that state: a
# name ``b`` bound there to anything but its documented object (a submodule that
# an import put on the package, say) is what it would get, and importing ``b`` after
# ``a`` binds no submodule that importing ``b`` first does not (Python binds a
# submodule on its first import). So one child per name checks every ordered pair,
# both orders included, without a fresh interpreter per pair.
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

    def check(first, names):
        ns = {}
        exec(f"from synthlung import {first}", ns)
        import synthlung
        bound = dict(vars(synthlung))  # before expected() imports anything more
        bad = [] if ns.get(first) is expected(first) else [f"from synthlung import {first} gave {ns.get(first)!r}"]
        for name in names:
            if name != first and name in bound and bound[name] is not expected(name):
                bad.append(f"{first} then {name}: synthlung.{name} is {bound[name]!r}")
        return "\\n".join(bad)

    import synthlung._version  # the package __init__ only; no submodule of the export table
    names = [n for n in __import__("synthlung").__all__ if n != "__version__"]
    for m in [m for m in sys.modules if m.startswith("synthlung")]:
        del sys.modules[m]
    bad = []
    for a in names:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                msg = check(a, names)
            except Exception as exc:  # an import that fails is a trap too
                msg = f"{a}: {type(exc).__name__}: {exc}"
            os.write(w, msg.encode())
            os._exit(0)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        if chunks:
            bad.append(b"".join(chunks).decode())
    print(len(names), "names,", len(names) * (len(names) - 1), "pairs")
    print("\\n".join(bad))
    sys.exit(1 if bad else 0)
""")


def test_every_pair_of_public_names_in_both_orders():
    result = subprocess.run([sys.executable, "-c", _PAIRS], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    n = len(synthlung.__all__) - 1
    assert f"{n} names, {n * (n - 1)} pairs" in result.stdout


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
