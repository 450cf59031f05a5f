"""The shipped package's layout: it carries no development tooling (the local control plane, the
demo and the harness live in devtools/, beside the package, and the operator never imports them),
and no import cycle among its modules (`python hack/imports.py` says the same)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "infer_operator"
DEV_PACKAGES = ("devtools", "tests", "bench")


def shipped_files() -> list[Path]:
    """Every file under the package (relative paths), a superset of what the wheel takes; byte
    code is left out, since a checkout keeps __pycache__ dirs of modules that are gone."""
    return sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_package_has_no_dev_tooling():
    files = shipped_files()
    assert Path("cli.py") in files  # the walk sees the package
    assert [str(p) for p in files if "devcluster" in p.parts or p.name == "demo.py"] == []


def test_package_sources_do_not_import_dev_tooling():
    pattern = re.compile(rf"^\s*(?:from|import)\s+(?:{'|'.join(DEV_PACKAGES)})\b", re.M)
    offenders = [str(p) for p in shipped_files() if p.suffix == ".py" and pattern.search((PACKAGE / p).read_text())]
    assert offenders == []


def test_importing_the_operator_loads_no_dev_tooling():
    # Run from the repo root, where devtools is importable: it must still not be imported.
    code = (
        "import importlib, pkgutil, sys, infer_operator\n"
        "for m in pkgutil.walk_packages(infer_operator.__path__, 'infer_operator.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {DEV_PACKAGES!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _imports_module():
    spec = importlib.util.spec_from_file_location("hack_imports", ROOT / "hack" / "imports.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["hack_imports"] = module
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_inside_the_package():
    imports = _imports_module()
    assert imports.cycles(imports.graph()) == []


def test_the_cycle_finder_finds_a_cycle_hidden_behind_a_late_import(tmp_path):
    imports = _imports_module()
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import C\n")
    (package / "c.py").write_text("def f():\n    from . import a\n")
    assert imports.cycles(imports.graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b", "pkg.c"]]
