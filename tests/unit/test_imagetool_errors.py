"""pyimg's error model: one hierarchy (imagetool.errors) and one mapping
point (imagetool.cli._call) from an exception to one stderr line and an
exit status. No root needed: verbs are stand-ins, or real verbs failing
before they touch anything but a temp dir."""
import errno
import re
import signal

import pytest

from imagetool import cli, errors
from runtime.toolkit.cmdtable import Verb

# what a user must never see on the error line
PYTHON_NAMES = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception|Interrupt)\b|\[Errno|Errno \d")


@pytest.fixture
def probe(monkeypatch):
    """probe(verb, raises_or_returns, a) -> (status, stderr): runs a stand-in
    for `verb` through cli._call."""
    def run(verb, what, a=None, capsys=None):
        def func(g, a):
            if isinstance(what, BaseException):
                raise what
            return what
        monkeypatch.setitem(cli.T.verbs, verb, Verb(func, ()))
        return cli._call(verb, {"root": "/nonexistent", "config": None}, dict(a or {}))
    return run


def _line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pyimg: error: "), err
    assert not PYTHON_NAMES.search(lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("exc,status", [
    (errors.PyimgError("x failed"), 1),
    (errors.UsageError("x failed"), 2),
    (errors.ReferenceError_("x failed"), 1),
    (errors.ConfigError("x failed"), 1),
    (errors.RegistryError("x failed", status=500), 1),
    (errors.AuthError("x failed"), 1),
    (errors.NotFoundError("x failed"), 1),
    (errors.CredentialsError("x failed"), 1),
    (errors.PullError("x failed"), 1),
    (errors.StoreError("x failed"), 1),
    (errors.NotFound("x failed"), 1),
    (errors.DigestMismatch("x failed"), 1),
    (errors.LayerError("x failed"), 1),
    (errors.StreamError("x failed"), 1),
    (errors.TarError("x failed"), 1),
    (errors.ArchiveError("x failed"), 1),
    (errors.BundleError("x failed"), 1),
    (errors.RunError("x failed"), 1),
    (errors.Interrupted("x failed"), 1),
])
def test_every_kind_is_one_line_and_its_status(probe, capsys, exc, status):
    assert probe("images", exc) == status
    assert _line(capsys) == "pyimg: error: images: x failed"


def test_every_kind_is_a_pyimg_error():
    kinds = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert len(kinds) >= 19 and all(issubclass(k, errors.PyimgError) for k in kinds)
    assert issubclass(errors.ReferenceError_, ValueError)  # as before: reference.parse's contract


def test_the_old_names_are_the_hierarchys_classes():
    from imagetool import archive, bundle, config, credentials, layer, pull, reference, registry, store, tarstream
    assert store.StoreError is errors.StoreError and store.NotFound is errors.NotFound
    assert store.DigestMismatch is errors.DigestMismatch
    assert registry.RegistryError is errors.RegistryError and registry.AuthError is errors.AuthError
    assert registry.NotFoundError is errors.NotFoundError
    assert issubclass(registry.Transient, errors.RegistryError)
    assert issubclass(registry.Stalled, errors.RegistryError)
    assert credentials.CredentialsError is errors.CredentialsError
    assert config.ConfigError is errors.ConfigError and reference.ReferenceError_ is errors.ReferenceError_
    assert layer.LayerError is errors.LayerError and bundle.BundleError is errors.BundleError
    assert tarstream.StreamError is errors.StreamError and tarstream.TarError is errors.TarError
    assert archive.ArchiveError is errors.ArchiveError and pull.PullError is errors.PullError


def test_an_untranslated_oserror_names_the_path_in_words(probe, capsys):
    e = OSError(errno.ENOSPC, "No space left on device", "/tmp/bb/rootfs/bin/x")
    assert probe("unpack", e, {"ref": "busybox", "bundle": "/tmp/bb"}) == 1
    assert _line(capsys) == ("pyimg: error: unpack busybox /tmp/bb: no space left on device "
                             "(/tmp/bb/rootfs/bin/x)")


def test_a_bug_is_one_line_with_a_status_of_its_own(probe, capsys, monkeypatch):
    monkeypatch.delenv("PYIMG_DEBUG", raising=False)
    assert probe("images", KeyError("config")) == cli.INTERNAL
    line = _line(capsys)
    assert line.startswith("pyimg: error: images: internal error: 'config' (at unit/test_imagetool_errors.py:")
    assert "PYIMG_DEBUG=1" in line
    assert cli.INTERNAL not in (0, 1, 2, 125, 126, 127, 130)


def test_pyimg_debug_adds_the_traceback(probe, capsys, monkeypatch):
    monkeypatch.setenv("PYIMG_DEBUG", "1")
    assert probe("images", KeyError("config")) == cli.INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err
    assert err.splitlines()[-1].startswith("pyimg: error: images: internal error: 'config'")


def test_ctrl_c_is_130(probe, capsys):
    assert probe("images", KeyboardInterrupt()) == 130
    assert capsys.readouterr().err == "pyimg: error: interrupted\n"


@pytest.mark.parametrize("exc", [errors.BundleError("x"), errors.UsageError("x"), errors.RunError("x"),
                                 errors.RegistryError("x"), OSError(errno.EACCES, "Permission denied", "/p"),
                                 ValueError("a bug")])
def test_run_fails_with_125_whatever_failed(probe, capsys, exc):
    # docker run: 125 is the engine's; every other status is the container's
    assert probe("run", exc, {"ref": "busybox", "cmd": []}) == 125
    _line(capsys)


@pytest.mark.parametrize("status", [0, 1, 2, 7, 126, 127, 137])
def test_run_passes_the_containers_status(probe, capsys, status):
    assert probe("run", status, {"ref": "busybox", "cmd": ["sh", "-c", f"exit {status}"]}) == status
    assert capsys.readouterr().err == ""


def test_the_line_names_the_verb_and_subject_never_the_command_or_options(probe, capsys):
    a = {"ref": "busybox", "cmd": ["sh", "-c", "echo s3cret"], "env": ["TOKEN=s3cret"], "name": "c1"}
    probe("run", errors.BundleError("it failed"), a)
    # (the engine's verbs say what failed in docker's words, which name the container or image)
    assert _line(capsys) == "pyimg: error: it failed"
    probe("unpack", errors.LayerError("no space left on device (writing /tmp/bb/rootfs/bin/x)"),
          {"ref": "busybox", "bundle": "/tmp/bb", "mode": "copy"})
    assert _line(capsys) == ("pyimg: error: unpack busybox /tmp/bb: no space left on device "
                             "(writing /tmp/bb/rootfs/bin/x)")
    # several references: the message names the one that failed
    probe("rmi", errors.NotFound("no such image in the store /s: b"), {"refs": ["a", "b"]})
    assert _line(capsys) == "pyimg: error: rmi: no such image in the store /s: b"


def test_a_message_with_newlines_is_still_one_line(probe, capsys):
    probe("images", errors.RegistryError("the registry said:\nline two\r\nline three"))
    assert _line(capsys) == "pyimg: error: images: the registry said: line two line three"


def test_a_library_context_wins_over_the_verbs(probe, capsys):
    e = errors.RegistryError("cannot reach r:5000").within("pull r:5000/app:latest")
    probe("pull", e, {"ref": "r:5000/app"})
    assert _line(capsys) == "pyimg: error: pull r:5000/app:latest: cannot reach r:5000"
    assert str(errors.StoreError("x").within("a").within("b")) == "a: x"


# ---------------------------------------------------------------- os_message

@pytest.mark.parametrize("e,doing,want", [
    (OSError(errno.ENOSPC, "No space left on device", "/x/y"), "writing /x/y",
     "no space left on device (writing /x/y)"),
    (OSError(errno.ENOSPC, "No space left on device"), None, "no space left on device"),
    (OSError(errno.EACCES, "Permission denied", "/etc/c.json"), None, "permission denied (/etc/c.json)"),
    (OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"), None,
     "invalid cross-device link (/a and /b)"),
    (OSError(errno.EROFS, "Read-only file system", b"/r"), None, "read-only file system (/r)"),
    # runtime.syscalls labels its errors: the errno's own words are used
    (OSError(errno.ENODEV, "mount /m (overlay): No such device", "/m"), "mounting /m",
     "no such device (mounting /m)"),
    # socket.gaierror: a negative EAI code, not an errno
    (OSError(-2, "Name or service not known"), None, "name or service not known"),
    (TimeoutError("timed out"), None, "timed out"),
])
def test_os_message_is_words_and_the_path(e, doing, want):
    assert errors.os_message(e, doing) == want


def test_os_message_of_a_tls_error_uses_its_reason():
    import ssl
    e = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1002)")
    e.reason = "WRONG_VERSION_NUMBER"
    assert errors.reason(e) == "wrong version number"


def test_connection_failures_are_words():
    from imagetool import http1
    from imagetool.registry import _oserror_text
    assert _oserror_text(http1.BadStatusLine("garbage")) == "invalid HTTP response (garbage)"
    assert _oserror_text(http1.IncompleteRead(b"abc", 7)) == "connection closed early (3 bytes read)"
    assert _oserror_text(http1.RemoteDisconnected("x")) == "server closed the connection"
    assert _oserror_text(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")) == \
        "connection reset by peer"
    assert _oserror_text(RuntimeError()) == "connection failed"


# ---------------------------------------------------------------- real verbs

@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / "store"


@pytest.fixture
def keep_signals():
    # the pull verb installs SIGINT/SIGTERM handlers: give pytest its own back
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def _dispatch(capsys, *argv) -> tuple[int, str]:
    rc = cli._dispatch(list(argv))
    return rc, _line(capsys)


def test_unreadable_config_names_the_file(store_dir, tmp_path, capsys, keep_signals):
    d = tmp_path / "config.json"
    d.mkdir()
    rc, line = _dispatch(capsys, "--root", str(store_dir), "--config", str(d), "pull", "busybox")
    assert rc == 1
    assert line == (f"pyimg: error: pull docker.io/library/busybox:latest: is a directory "
                    f"(reading the config file {d})")
    assert not store_dir.exists()


@pytest.mark.parametrize("content,what", [(b"{nope", "not valid JSON"), (b"\xff\xfe{}", "not UTF-8 text"),
                                          (b"[]", "top level must be a JSON object")])
def test_bad_config_file_is_one_line(store_dir, tmp_path, capsys, keep_signals, content, what):
    c = tmp_path / "c.json"
    c.write_bytes(content)
    rc, line = _dispatch(capsys, "--root", str(store_dir), "--config", str(c), "pull", "busybox")
    assert rc == 1 and f"config file {c}: {what}" in line


def test_credentials_file_unreadable(tmp_path):
    from imagetool.credentials import Credentials
    (tmp_path / "config.json").mkdir()
    with pytest.raises(errors.CredentialsError) as ei:
        Credentials(str(tmp_path)).get("reg.example")
    assert str(ei.value) == f"is a directory (reading {tmp_path / 'config.json'})"


def test_bad_reference_before_any_network(store_dir, capsys, keep_signals):
    rc, line = _dispatch(capsys, "--root", str(store_dir), "pull", "Not/A/Valid//Ref")
    assert rc == 1 and "invalid reference format 'Not/A/Valid//Ref'" in line
    assert not store_dir.exists()


def test_unknown_image_in_the_store(store_dir, tmp_path, capsys):
    for argv in (["rmi", "nothing:here"], ["tag", "nothing:here", "x:1"],
                 ["unpack", "nothing:here", str(tmp_path / "b")]):
        rc, line = _dispatch(capsys, "--root", str(store_dir), *argv)
        assert rc == 1, argv
        assert f"no such image in the store {store_dir}: nothing:here" in line, line
    assert not (tmp_path / "b").exists()
    # inspect looks for a container, an image, a volume and a network, as docker does
    assert cli._dispatch(["--root", str(store_dir), "inspect", "nothing:here"]) == 1
    out = capsys.readouterr()
    assert out.err == "Error: No such object: nothing:here\n" and out.out == "[]\n"


def test_rmi_of_several_missing_references_is_one_line(store_dir, capsys):
    rc, line = _dispatch(capsys, "--root", str(store_dir), "rmi", "a:1", "b:2")
    assert rc == 1
    assert line == (f"pyimg: error: rmi: no such image in the store {store_dir}: a:1; "
                    f"no such image in the store {store_dir}: b:2")


@pytest.mark.parametrize("argv,status,fragment", [
    (["images", "--format", "xml"], 2, "unknown --format 'xml'"),
    (["unpack", "--uid-map", "0:1", "busybox", "/tmp/nowhere"], 2, "invalid id map '0:1'"),
    (["unpack", "--mode", "bogus", "busybox", "/tmp/nowhere"], 2, "unknown unpack mode 'bogus'"),
    (["save", "--format", "zip", "-o", "/tmp/nowhere.tar", "busybox"], 2, "unknown format 'zip'"),
    (["images", "--nope"], 2, "--nope"),
    (["nosuchverb"], 2, "nosuchverb"),
    (["run", "--restart", "bogus", "busybox", "true"], 125, "invalid restart policy 'bogus'"),
    (["run", "--rm", "--restart", "always", "busybox"], 125, "Conflicting options: --restart and --rm"),
    (["run", "-p", "abc", "busybox"], 125, "invalid containerPort: abc"),
    (["run", "--name", "-bad", "busybox"], 125, "Invalid container name (-bad)"),
    (["run", "--nope", "busybox"], 125, "unknown flag: --nope"),
    (["run", "-m", "lots", "busybox"], 125, "invalid size: 'lots'"),
    (["ps", "--nope"], 125, "unknown flag: --nope"),
])
def test_usage_errors(store_dir, capsys, argv, status, fragment):
    rc, line = _dispatch(capsys, "--root", str(store_dir), *argv)
    assert (rc, fragment in line) == (status, True), line
    assert not store_dir.exists()


def test_an_error_in_the_store_index_names_the_file(store_dir, capsys):
    store_dir.mkdir()
    (store_dir / "index.json").mkdir()
    rc, line = _dispatch(capsys, "--root", str(store_dir), "images")
    assert rc == 1
    assert line == f"pyimg: error: images: is a directory (reading {store_dir / 'index.json'})"


def test_a_load_of_something_else_is_one_line(store_dir, tmp_path, capsys):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    rc, line = _dispatch(capsys, "--root", str(store_dir), "load", "-i", str(junk))
    assert rc == 1 and line == f"pyimg: error: load {junk}: not a readable tar archive"
    rc, line = _dispatch(capsys, "--root", str(store_dir), "load", "-i", str(tmp_path / "none.tar"))
    assert rc == 1
    assert line == (f"pyimg: error: load {tmp_path / 'none.tar'}: no such file or directory "
                    f"(reading {tmp_path / 'none.tar'})")
    assert not (store_dir / "index.json").exists()
