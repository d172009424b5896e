"""The project's own modules, for the tests that read the source
(test_boundaries, test_import_graph, test_import_policy)."""
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("runtime", "imagetool")


def modules() -> dict[str, str]:
    """Dotted module name -> source path, for every module of PACKAGES."""
    found = {}
    for pkg in PACKAGES:
        for d, dirs, files in os.walk(os.path.join(REPO, pkg)):
            dirs[:] = [x for x in dirs if x != "__pycache__"]
            rel = os.path.relpath(d, REPO).replace(os.sep, ".")
            for f in files:
                if f.endswith(".py"):
                    found[rel if f == "__init__.py" else f"{rel}.{f[:-3]}"] = os.path.join(d, f)
    return found
