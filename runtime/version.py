"""The versions pyrunc and pyimg report: the project's own (pyproject.toml
reads it from here) and that of the OCI runtime spec the runtime
implements (`pyrunc --version`, `features`, the ociVersion `spec` writes).

Loaded only by the calls that print a version or describe the build, never
by a container's verbs."""
from runtime.toolkit import os_lite as os

VERSION = "0.1.0"
SPEC_VERSION = "1.3.0"


def text() -> str:
    """What `pyrunc --version` prints after "pyrunc version ", in runc's
    three lines: the version, the git commit of the checkout ("unknown"
    outside one) and the spec version."""
    commit = "unknown"
    try:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(here, ".git", "HEAD")) as f:
            head = f.read().strip()
        if head.startswith("ref: "):
            with open(os.path.join(here, ".git", head[5:])) as f:
                commit = f.read().strip()[:12]
        else:
            commit = head[:12]
    except OSError:
        pass
    return f"{VERSION}\ncommit: {commit}\nspec: {SPEC_VERSION}"
