"""Exceptions the runtime raises on purpose. The CLI maps every exception to
one log line and an exit code in a single place (runtime.cli.main).

RuntimeFailure is defined at import. Its subclasses are made on first use
(a module __getattr__, PEP 562): creating a class costs 50-70 K
instructions, every pyrunc call imports this module, and most calls raise
none of them. `from runtime.errors import InvalidState` works as usual;
modules on the hot paths write `errors.InvalidState(...)` at the raise site
so that only a call that raises pays for the class. Each class is made
once, so identity (isinstance, except) holds.
"""


class RuntimeFailure(Exception):
    """An operation failed; str(e) is the one-line message shown to the user."""
    exit_code = 1


def _define(name: str) -> type:
    if name == "ContainerNotFound":
        class ContainerNotFound(RuntimeFailure):
            def __init__(self, cid: str):
                super().__init__(f'container "{cid}" does not exist')
        return ContainerNotFound
    if name == "ContainerExists":
        class ContainerExists(RuntimeFailure):
            def __init__(self, cid: str):
                super().__init__(f'container with id "{cid}" already exists')
        return ContainerExists
    if name == "StateDamaged":
        class StateDamaged(RuntimeFailure):
            """A container's state file cannot be used (runtime.state.load):
            its processes may still run."""
            def __init__(self, cid: str, cdir: str, reason: str):
                self.cid, self.cdir = cid, cdir
                self.detail = f"state file in {cdir} is corrupt ({reason})"
                super().__init__(f"container {cid!r}: {self.detail}")
        return StateDamaged
    if name == "InvalidState":
        class InvalidState(RuntimeFailure):
            """The container is not in a state that allows the operation."""
        return InvalidState
    if name == "InitFailure":
        class InitFailure(RuntimeFailure):
            """The container's init reported an error (or died) while being set up."""
        return InitFailure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __getattr__(name: str) -> type:
    cls = _define(name)
    cls.__qualname__ = name
    globals()[name] = cls
    return cls
