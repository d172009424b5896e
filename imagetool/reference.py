"""Image references, normalised the way Docker does it.

    busybox                       -> docker.io/library/busybox:latest
    user/app                      -> docker.io/user/app:latest
    localhost:5000/a/b:v1         -> localhost:5000/a/b:v1
    busybox@sha256:<64 hex>       -> docker.io/library/busybox@sha256:<64 hex>
    busybox:1.36@sha256:<64 hex>  -> docker.io/library/busybox:1.36@sha256:<64 hex>

A first path component is a registry host only if it contains "." or ":" or
is "localhost" (Docker's rule); otherwise the image lives on docker.io, and a
single-component docker.io name gets the "library/" prefix. "index.docker.io"
is folded into "docker.io". A reference with a digest and no tag gets no
":latest". Invalid references raise ReferenceError_ (imagetool.errors; a
ValueError too) with a one-line message naming the reference.

Pure functions, no I/O: safe to import from the CLI's cold path.
"""
import re

from imagetool.errors import ReferenceError_

DOCKER_HUB = "docker.io"
DEFAULT_TAG = "latest"
NAME_TOTAL_MAX = 255

# path component: lowercase alphanumerics separated by ".", "_", "__" or "-"+
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}\Z")
_HOSTNAME = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*\Z")
_IPV6 = re.compile(r"\[[0-9a-fA-F:.%a-zA-Z]+\]\Z")


class Reference:
    """An immutable, hashable parsed reference. (A plain class: dataclasses
    imports inspect and ast on every pyimg call.)"""
    __slots__ = ("registry", "repository", "tag", "digest")
    registry: str          # "docker.io", "127.0.0.1:5000", "[::1]:5000"
    repository: str        # "library/busybox"
    tag: str | None        # None when only a digest was given
    digest: str | None     # "sha256:..." or None

    def __init__(self, registry: str, repository: str, tag: str | None, digest: str | None):
        for k, v in zip(self.__slots__, (registry, repository, tag, digest)):
            object.__setattr__(self, k, v)

    def __setattr__(self, name, value):
        raise AttributeError(f"Reference is immutable (cannot set {name})")

    def _key(self) -> tuple:
        return (self.registry, self.repository, self.tag, self.digest)

    def __eq__(self, other) -> bool:
        return isinstance(other, Reference) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Reference(registry={self.registry!r}, repository={self.repository!r}, "
                f"tag={self.tag!r}, digest={self.digest!r})")

    @property
    def name(self) -> str:
        """registry/repository, e.g. docker.io/library/busybox."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def familiar(self) -> str:
        """Docker's short form: busybox:latest, user/app:v1, host:5000/x:y."""
        name = self.name
        if self.registry == DOCKER_HUB:
            name = self.repository
            if name.startswith("library/") and name.count("/") == 1:
                name = name[len("library/"):]
        s = name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s


def _fail(ref: str, why: str):
    raise ReferenceError_(f"invalid reference format {ref!r}: {why}")


def _valid_host(ref: str, host: str) -> None:
    h, port = host, None
    if h.startswith("["):
        end = h.find("]")
        if end < 0:
            _fail(ref, f"bad registry host {host!r}")
        if end + 1 < len(h):
            if h[end + 1] != ":":
                _fail(ref, f"bad registry host {host!r}")
            port = h[end + 2:]
        h = h[:end + 1]
        if not _IPV6.match(h):
            _fail(ref, f"bad registry host {host!r}")
    else:
        if ":" in h:
            h, _, port = h.partition(":")
        if not _HOSTNAME.match(h):
            _fail(ref, f"bad registry host {host!r}")
    if port is not None and (not port.isdigit() or not 0 < int(port) < 65536):
        _fail(ref, f"bad port in registry host {host!r}")


def parse(ref: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise ref; raises ReferenceError_ when invalid.

    default_tag: add "latest" when neither tag nor digest is given."""
    if not isinstance(ref, str) or not ref:
        _fail(str(ref), "empty reference")
    if ref != ref.strip() or any(c.isspace() for c in ref):
        _fail(ref, "contains whitespace")
    if "://" in ref:
        _fail(ref, "a reference has no URL scheme")
    rest = ref
    digest = None
    if "@" in rest:
        rest, _, digest = rest.rpartition("@")
        if "@" in rest:
            _fail(ref, "more than one '@'")
        if not _DIGEST.match(digest):
            _fail(ref, f"bad digest {digest!r}")
        algo, _, hexpart = digest.partition(":")
        if algo == "sha256" and not re.fullmatch(r"[a-f0-9]{64}", hexpart):
            _fail(ref, "sha256 digest must be 64 lowercase hex characters")
        if algo == "sha512" and not re.fullmatch(r"[a-f0-9]{128}", hexpart):
            _fail(ref, "sha512 digest must be 128 lowercase hex characters")
    # the tag is after the last ':' only if that ':' is after the last '/'
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            _fail(ref, f"bad tag {tag!r}")
    if not rest:
        _fail(ref, "empty repository name")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")
                or first != first.lower()):
        # (Docker's rule: an uppercase first component is a host name too)
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
    if registry != DOCKER_HUB:
        _valid_host(ref, registry)
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if path != path.lower():
        _fail(ref, "repository name must be lowercase")
    if not path:
        _fail(ref, "empty repository name")
    for comp in path.split("/"):
        if not _COMPONENT.match(comp):
            _fail(ref, f"bad repository path component {comp!r}")
    if registry == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if len(registry) + 1 + len(path) > NAME_TOTAL_MAX:
        _fail(ref, f"repository name longer than {NAME_TOTAL_MAX} characters")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest)


def normalize(ref: str) -> str:
    """The fully qualified form of ref (see module docstring)."""
    return str(parse(ref))


def is_digest(s: str) -> bool:
    """True for "sha256:<64 hex>" (an image or manifest id)."""
    return bool(re.fullmatch(r"sha256:[a-f0-9]{64}", s))
