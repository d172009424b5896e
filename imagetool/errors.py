"""pyimg's errors: one hierarchy, one exit status per kind.

Every failure pyimg reports on purpose is a PyimgError. str() is the one
line the user sees after "pyimg: error: ", exit_code the status pyimg exits
with; the CLI maps every exception to that line and status in one place
(imagetool.cli._call). A module raises the kind of its own mechanism and
lets it propagate:

    PyimgError                  1
      UsageError                2  the command line asks for something it cannot
      ReferenceError_           1  an invalid image reference or platform (a ValueError too)
      ConfigError               1  the settings file, or an option that overrides a setting
      RegistryError             1  talking to a registry (status and code of its answer)
        AuthError                  the registry or its token server refused the request
        NotFoundError              the registry has no such manifest, blob or repository
        CredentialsError           Docker's config.json or a credential helper
        PullError                  what a pull found wrong with the image it was served
      StoreError                1  the content store (imagetool.store)
        NotFound                   no such image in the store
        DigestMismatch             content that does not hash to its digest
      LayerError                1  reading or applying a layer blob, or an image archive
        StreamError                the compressed stream of a layer is corrupt
        TarError                   the tar stream inside it is malformed
        ArchiveError               a docker-archive or oci-archive file
      BundleError               1  making, mounting or removing a bundle
      RunError                  1  the OCI runtime could not be found, run, or start a container
      EngineError               1  a container, network or volume operation (imagetool.engine)
        NoSuchContainer            no container by that name or id
        CommandError      126/127  the container's command cannot be run / is not found
      Interrupted               1  an operation stopped by a signal, its effects undone

`pyimg run` (and create, start -a, exec) exit 125 for any of them
(docker's "the engine failed"), so that every other status is the
container's own; a CommandError keeps its 126 or 127 there too.

An OSError is translated where it happens, with os_message(): what the OS
said in words and what was being done to which path, e.g. "no space left
on device (writing /tmp/bb/rootfs/bin/x)", never an exception name or
errno notation.

A message names the object it is about (a blob, a layer entry, a path);
the operation the user asked for ("pull docker.io/library/busybox:latest")
comes first, from within(): set by the library call that knows it best,
else by the CLI from the verb and its positionals.

The classes are plain and defined at import: every pyimg call loads this
module, and the kinds are few.
"""
import os


class PyimgError(Exception):
    """A failure pyimg reports; str() is one line, exit_code the exit status."""
    exit_code = 1
    context = None

    def within(self, context: str) -> "PyimgError":
        """Put `context` (what the user asked for) before the message, unless
        an inner call already named one. Returns self, for `raise e.within(...)`."""
        if self.context is None:
            self.context = context
        return self

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{self.context}: {msg}" if self.context else msg


class UsageError(PyimgError):
    """The command line asks for something impossible (a bad combination
    of options, a value outside the choices)."""
    exit_code = 2


class ReferenceError_(PyimgError, ValueError):  # noqa: N801 - the name predates this module
    """An invalid image reference (or platform); the message names it."""


class ConfigError(PyimgError):
    """The settings file, or an option overriding one of its settings."""


class RegistryError(PyimgError):
    """A registry operation failed; status and code are those of the
    registry's answer, when there was one."""

    def __init__(self, msg: str, *, status: int | None = None, code: str | None = None):
        super().__init__(msg)
        self.status = status
        self.code = code


class AuthError(RegistryError):
    """The registry or its token server refused the request."""


class NotFoundError(RegistryError):
    """The registry has no such manifest, blob or repository."""


class CredentialsError(RegistryError):
    """Docker's client config or a credential helper failed."""


class PullError(RegistryError):
    """The image a registry served cannot be pulled (its kind, platform or size)."""


class StoreError(PyimgError):
    """A content store operation failed."""


class NotFound(StoreError):
    """No such image (or blob) in the store."""


class DigestMismatch(StoreError):
    """Content that does not hash to its digest or has the wrong size."""


class LayerError(PyimgError):
    """A layer blob or an image archive could not be read or applied; the
    message names the entry, blob or file."""


class StreamError(LayerError):
    """The compressed stream is corrupt or truncated (the message says which)."""


class TarError(LayerError):
    """The tar stream is malformed; the message names the entry or offset."""


class ArchiveError(LayerError):
    """A docker-archive or oci-archive file could not be written or read."""


class BundleError(PyimgError):
    """A bundle operation failed; the message names the bundle, ref or path."""


class RunError(PyimgError):
    """The OCI runtime could not be found or run, or it did not start the container."""


class EngineError(PyimgError):
    """A container, network or volume operation failed; the message names
    the container, network or volume, in docker's words where docker has them."""


class NoSuchContainer(EngineError):
    """No container has that name, id or id prefix."""


class CommandError(EngineError):
    """The container's command cannot be run (126) or is not found (127):
    docker run's own statuses for these, kept by every verb that runs one."""

    def __init__(self, msg: str, status: int):
        super().__init__(msg)
        self.status = status


class Interrupted(PyimgError):
    """A signal stopped the operation; the message says what was undone."""


def reason(e: OSError) -> str:
    """What the OS said, in words: "no space left on device". The errno's
    own text where there is one (an OSError made by runtime.syscalls
    carries a label in its strerror)."""
    if any(c.__name__ == "SSLError" and c.__module__ == "ssl" for c in type(e).__mro__):
        # (not imported here: ssl is heavy) its errno is OpenSSL's
        text = str(getattr(e, "reason", None) or e.strerror or "TLS failure").lower().replace("_", " ")
    elif e.errno and e.errno > 0:  # (socket.gaierror's are negative EAI codes)
        text = os.strerror(e.errno)
    else:
        text = e.strerror or str(e) or "failed"
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    return text


def _path(p) -> str:
    return os.fsdecode(p) if isinstance(p, bytes) else str(p)


def os_message(e: OSError, doing: str | None = None) -> str:
    """One line for an OSError: reason(e), then in parentheses what was
    being done to which path, "no space left on device (writing /x/y)".
    Without `doing`, the paths the error carries, if any."""
    if doing is None:
        paths = [_path(p) for p in (e.filename, e.filename2) if p is not None]
        doing = " and ".join(paths)
    return f"{reason(e)} ({doing})" if doing else reason(e)


def internal(e: BaseException) -> str:
    """One line for an exception pyimg did not expect (a bug): its message
    and where it was raised, without its class name or a traceback."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    what = (str(e).splitlines() or ["no message"])[0][:300]
    if tb is None:
        return f"internal error: {what}"
    where = "/".join(tb.tb_frame.f_code.co_filename.split("/")[-2:])
    return f"internal error: {what} (at {where}:{tb.tb_lineno}; PYIMG_DEBUG=1 shows the traceback)"
