"""runtime-linux.md: file descriptors and /dev symbolic links."""

DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2"}


def test_dev_symlinks(crt):
    """runtime-linux.md#dev-symbolic-links: "runtimes MUST create the following
    symlinks if the source file exists after processing mounts": /dev/fd,
    /dev/stdin, /dev/stdout, /dev/stderr."""
    d = crt.probe()
    for name, target in DEV_LINKS.items():
        link = d["dev"].get(name)
        assert link and link["type"] == "symlink" and link["target"] == target, (name, link)


def test_only_stdio_fds_are_open(crt):
    """runtime-linux.md#file-descriptors: "By default, only the stdin, stdout and
    stderr file descriptors are kept open for the application by the runtime" -
    no descriptor of the runtime leaks into the container process."""
    d = crt.probe()
    assert sorted(d["fds"], key=int) == ["0", "1", "2"], d["fds"]
