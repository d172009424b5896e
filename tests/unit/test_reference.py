"""Reference parsing and Docker-compatible normalisation."""
import pytest

from imagetool.reference import Reference, ReferenceError_, is_digest, normalize, parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("ref, want", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
    ("user/app", "docker.io/user/app:latest"),
    ("user/app:v2", "docker.io/user/app:v2"),
    ("docker.io/user/app/sub", "docker.io/user/app/sub:latest"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app:v1", "localhost:5000/app:v1"),
    ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t"),
    ("quay.io/coreos/etcd", "quay.io/coreos/etcd:latest"),
    ("ghcr.io/o/r:sha-1.2_x", "ghcr.io/o/r:sha-1.2_x"),
    ("[::1]:5000/app", "[::1]:5000/app:latest"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
    (f"busybox:1.36@{D}", f"docker.io/library/busybox:1.36@{D}"),
    (f"localhost:5000/app@{D}", f"localhost:5000/app@{D}"),
    ("a__b/c-d.e_f", "docker.io/a__b/c-d.e_f:latest"),
    ("Host/app", "Host/app:latest"),  # Docker: an uppercase first component is a host
])
def test_normalize(ref, want):
    assert normalize(ref) == want


def test_parse_fields():
    r = parse(f"localhost:5000/team/app:v1@{D}")
    assert r == Reference("localhost:5000", "team/app", "v1", D)
    assert r.reference == D  # the digest is what is fetched
    assert r.name == "localhost:5000/team/app"
    r = parse("busybox")
    assert (r.registry, r.repository, r.tag, r.digest) == ("docker.io", "library/busybox", "latest", None)
    assert r.reference == "latest"
    assert r.familiar() == "busybox:latest"
    assert parse("user/app:v1").familiar() == "user/app:v1"


def test_digest_only_gets_no_latest_tag():
    r = parse(f"busybox@{D}")
    assert r.tag is None and r.digest == D


@pytest.mark.parametrize("ref, fragment", [
    ("", "empty"),
    ("Busybox", "lowercase"),
    ("docker.io/User/app", "lowercase"),
    ("busybox:", "bad tag"),
    ("busybox:-x", "bad tag"),
    ("busybox:" + "t" * 129, "bad tag"),
    ("busybox@sha256:abc", "bad digest"),
    ("busybox@sha256:" + "a" * 40, "64"),
    ("busybox@md5:zz", "bad digest"),
    ("bu sybox", "whitespace"),
    ("https://docker.io/busybox", "URL scheme"),
    ("a//b", "path component"),
    ("a/b_/c", "path component"),
    ("-a/b", "path component"),
    ("host:99999/app", "port"),
    ("host:abc/app:1", "host"),
    ("a@b@" + D, "more than one"),
    ("docker.io/" + "a" * 300, "longer"),
])
def test_invalid(ref, fragment):
    with pytest.raises(ReferenceError_) as ei:
        parse(ref)
    msg = str(ei.value)
    assert "\n" not in msg
    assert fragment in msg
    assert "invalid reference format" in msg


def test_is_digest():
    assert is_digest(D)
    assert not is_digest("sha256:" + "A" * 64)
    assert not is_digest("a" * 64)
