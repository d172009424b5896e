"""The rooms' boundaries, checked on the source (no root needed):
- no module imports another module's private names;
- imagetool uses runtime only through the names runtime/toolkit/__init__.py
  documents as its public interface.
Imports anywhere in a module count, at the top or inside functions."""
import ast
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from project_modules import PACKAGES, REPO, modules  # noqa: E402
# Private modules that their own room imports: the generated validator and
# the checks it is generated against (validate.py, scripts/gen_validator.py).
PRIVATE_MODULES_OK = {("runtime.validate", "runtime._config_validator"),
                      ("runtime._config_validator", "runtime._schema_checks")}


MODULES = modules()


def _imports(path):
    """(module imported from, name) for every from-import, and (module, None)
    for every plain import, of runtime/imagetool modules."""
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] in PACKAGES:
            for a in node.names:
                yield node.module, a.name
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES:
                    yield a.name, None


def test_the_checks_see_the_tree():
    assert "runtime.container" in MODULES and "imagetool.cli" in MODULES and "runtime.toolkit.os_lite" in MODULES


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_no_private_names_of_another_module(mod):
    bad = []
    for src, name in _imports(MODULES[mod]):
        for part in ([name] if name else []) + src.split(".")[1:]:
            if part and part.startswith("_") and not part.startswith("__"):
                target = src if part != name else (f"{src}.{name}" if f"{src}.{name}" in MODULES else src)
                if (mod, target) in PRIVATE_MODULES_OK or target == mod:
                    continue
                bad.append(f"{src}:{name}" if name else src)
    assert not bad, f"{mod} imports private names of other modules: {bad}"


def _documented_interface() -> set[str]:
    doc = open(os.path.join(REPO, "runtime", "toolkit", "__init__.py")).read()
    section = doc.split("Public interface for other tools", 1)[1]
    names = set()
    for line in section.splitlines():
        m = re.match(r"\s+(runtime[\w.]*)(?: \(([^)]*)\))?", line)
        if not m:
            continue
        for item in re.findall(r"runtime[\w.]*", line):
            names.add(item.rstrip(".,"))
        if m.group(2) and m.group(1).endswith("cmdtable"):
            names.update(f"{m.group(1)}.{n.strip()}" for n in m.group(2).split(","))
    return names


def test_imagetool_uses_runtime_only_through_its_documented_interface():
    allowed = _documented_interface()
    assert "runtime.syscalls" in allowed and "runtime.toolkit.fastjson" in allowed
    bad = []
    for mod, path in MODULES.items():
        if not mod.startswith("imagetool"):
            continue
        for src, name in _imports(path):
            if not src.startswith("runtime"):
                continue
            full = f"{src}.{name}" if name else src
            # a whole module that is documented, or a documented name in it
            if full in allowed or src in allowed and src != "runtime" or name is None and src in allowed:
                if src.endswith("cmdtable") and name and full not in allowed:
                    bad.append(f"{mod}: {full}")
                continue
            bad.append(f"{mod}: {full}")
    assert not bad, f"imagetool reaches past runtime's public interface: {bad}"
