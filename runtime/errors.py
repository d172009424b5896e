"""Exceptions the runtime raises on purpose. The CLI maps every exception to
one log line and an exit code in a single place (runtime.cli.main): str(e)
is the line, e.exit_code the status."""


class RuntimeFailure(Exception):
    """An operation failed; str(e) is the one-line message shown to the user."""
    exit_code = 1


class ContainerNotFound(RuntimeFailure):
    def __init__(self, cid: str):
        super().__init__(f'container "{cid}" does not exist')


class ContainerExists(RuntimeFailure):
    def __init__(self, cid: str):
        super().__init__(f'container with id "{cid}" already exists')


class StateDamaged(RuntimeFailure):
    """A container's state file cannot be used (runtime.state.load): its
    processes may still run."""

    def __init__(self, cid: str, cdir: str, reason: str):
        self.cid, self.cdir = cid, cdir
        self.detail = f"state file in {cdir} is corrupt ({reason})"
        super().__init__(f"container {cid!r}: {self.detail}")


class InvalidState(RuntimeFailure):
    """The container is not in a state that allows the operation."""


class InitFailure(RuntimeFailure):
    """The container's init reported an error (or died) while being set up."""
