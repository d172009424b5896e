"""Verbs that manage a running container through its cgroup: ps, pause,
resume, update, events; and `features`, which describes this build."""
from runtime.toolkit import fastjson as json
from runtime.toolkit import os_lite as os
import _signal as signal  # the C module: `signal` imports enum
import posix
import sys
import time

from runtime import state as st
from runtime.errors import InvalidState, RuntimeFailure
from runtime import cgroups
# Optional edges, imported by the one verb that uses each: select (ps,
# events), runtime.validate (update), caps/rootfs/seccomp/version
# (features).


def _cgroup(data: dict) -> dict:
    """The container's cgroup state (a manager's to_state())."""
    if not data.get("cgroup"):
        raise RuntimeFailure(f"container {data['id']!r} has no cgroup")
    return data["cgroup"]


def _manager(data: dict):
    return cgroups.manager_from_state(_cgroup(data))


def pids(root: str, cid: str) -> list[int]:
    """The pids in the container's cgroup and its sub-cgroups, sorted (read
    by the cgroups package without loading a manager)."""
    return cgroups.pids(_cgroup(st.load(root, cid)))


def ps_table(root: str, cid: str, ps_args: list[str]) -> str:
    """Run ps(1) with `ps_args` and keep the header and the container's lines."""
    wanted = set(pids(root, cid))
    rc, out, err = _capture(["ps", *(ps_args or ["-ef"])])
    if rc != 0:
        raise RuntimeFailure(f"ps: {err.strip()}")
    lines = out.splitlines()
    if not lines:
        return ""
    header = lines[0].split()
    try:
        col = header.index("PID")
    except ValueError:
        raise RuntimeFailure("ps: the output has no PID column (add -o pid)") from None
    keep = [lines[0]]
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            keep.append(line)
    return "\n".join(keep)


def _capture(argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `argv`, found on PATH and run with
    this process's environment and stdin and SIGPIPE and SIGXFSZ back at
    their defaults: what subprocess.run(capture_output=True) does, without
    importing subprocess (and with it os, threading and selectors, which
    cost `ps` more than the rest of it). Of our fds the child gets the two
    pipes only, as everything Python opens is close-on-exec; unlike
    subprocess, an fd our own caller left open without close-on-exec is
    not closed (runc's ps leaves those alone too). The output is decoded
    as UTF-8 with surrogateescape, so that printing it writes ps's bytes as
    they were."""
    import select
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        # The environment os.environ holds when a caller in this process
        # loaded os (and may have changed it), else the one we started with.
        env = sys.modules["os"].environ if "os" in sys.modules else posix.environ
        pid = os.posix_spawnp(argv[0], argv, env,
                              file_actions=[(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)],
                              setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    got: dict[int, list[bytes]] = {out_r: [], err_r: []}
    done = False
    try:
        poll = select.poll()
        for fd in got:
            poll.register(fd, select.POLLIN)
        left = len(got)
        while left:
            for fd, _ev in poll.poll():
                chunk = os.read(fd, 65536)
                if chunk:
                    got[fd].append(chunk)
                else:
                    poll.unregister(fd)
                    left -= 1
        done = True
    finally:
        os.close(out_r)
        os.close(err_r)
        if not done:  # interrupted: end the child rather than wait for it (subprocess.run's way)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            status = os.waitpid(pid, 0)[1]
        except ChildProcessError:
            # Reaped by someone else in this process (SIGCHLD ignored, a
            # subreaper's wait loop): subprocess takes that as success.
            status = 0
    return (os.waitstatus_to_exitcode(status), b"".join(got[out_r]).decode("utf-8", "surrogateescape"),
            b"".join(got[err_r]).decode("utf-8", "surrogateescape"))


def pause(root: str, cid: str) -> None:
    data = st.load(root, cid)
    with st.Lock(data["_dir"], cid):
        status = st.status(data)
        if status not in ("running", "created"):
            raise InvalidState(f"container not running: {status}" if status != "paused"
                               else "container already paused")
        _manager(data).freeze()


def resume(root: str, cid: str) -> None:
    data = st.load(root, cid)
    with st.Lock(data["_dir"], cid):
        if st.status(data) != "paused":
            raise InvalidState("container not paused")
        _manager(data).thaw()


_SUFFIX = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3,
           "t": 1024**4, "tb": 1024**4}


def checkpoint(root: str, cid: str, image_path: str | None, work_path: str | None,
               parent_path: str | None) -> None:
    """`checkpoint`: the container and the image paths are checked as runc
    checks them; the dump itself (CRIU) is not implemented, which is said
    in one line instead of pretending."""
    data = st.load(root, cid)
    if st.status(data) != "running":
        raise InvalidState("container is not running")
    image = image_path or os.path.join(os.getcwd(), "checkpoint")
    if parent_path:
        if os.path.isabs(parent_path):
            raise RuntimeFailure("--parent-path must be relative")
        real = os.path.join(image, parent_path)
        if not os.path.isdir(real):
            what = "not a directory" if os.path.exists(real) else "no such file or directory"
            raise RuntimeFailure(f"invalid --parent-path: stat {real}: {what}")
    del work_path
    raise RuntimeFailure("checkpoint is not supported by pyrunc (no CRIU integration)")


def parse_bytes(flag: str, v: str) -> int:
    """runc accepts memory sizes like 512m, 1G or -1."""
    s = v.strip().lower()
    if s == "-1":
        return -1
    num = s.rstrip("kmgtb")
    unit = s[len(num):]
    try:
        if unit not in _SUFFIX:
            raise ValueError
        return int(float(num) * _SUFFIX[unit])
    except ValueError:
        raise RuntimeFailure(f"{flag}: invalid size {v!r}") from None


def resources_from_flags(flags: dict) -> dict:
    """Build a LinuxResources object from runc's individual update flags
    (`flags` maps flag names without dashes to their string values)."""
    res: dict = {}
    for flag, (section, key, kind) in UPDATE_FLAGS.items():
        v = flags.get(flag)
        if v is None:
            continue
        if kind == "bytes":
            val = parse_bytes("--" + flag, v)
        elif kind == "int":
            try:
                val = int(v)
            except ValueError:
                raise RuntimeFailure(f"--{flag}: invalid number {v!r}") from None
        else:
            val = v
        res.setdefault(section, {})[key] = val
    return res


# flag -> (resources section, key, kind)
UPDATE_FLAGS = {
    "blkio-weight": ("blockIO", "weight", "int"),
    "cpu-period": ("cpu", "period", "int"),
    "cpu-quota": ("cpu", "quota", "int"),
    "cpu-rt-period": ("cpu", "realtimePeriod", "int"),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", "int"),
    "cpu-share": ("cpu", "shares", "int"),
    "cpuset-cpus": ("cpu", "cpus", "str"),
    "cpuset-mems": ("cpu", "mems", "str"),
    "memory": ("memory", "limit", "bytes"),
    "memory-reservation": ("memory", "reservation", "bytes"),
    "memory-swap": ("memory", "swap", "bytes"),
    "kernel-memory": ("memory", "kernel", "bytes"),
    "kernel-memory-tcp": ("memory", "kernelTCP", "bytes"),
    "pids-limit": ("pids", "limit", "int"),
}


def update(root: str, cid: str, resources_file: str | None, flags: dict) -> list[str]:
    """Apply new resource limits live; returns warnings."""
    data = st.load(root, cid)
    if resources_file:
        try:
            raw = sys.stdin.read() if resources_file == "-" else open(resources_file).read()
            res = json.loads(raw)
        except OSError as e:
            raise RuntimeFailure(f"--resources {resources_file}: {e.strerror}") from None
        except ValueError as e:
            raise RuntimeFailure(f"--resources {resources_file}: invalid JSON: {e}") from None
        if not isinstance(res, dict):
            raise RuntimeFailure(f"--resources {resources_file}: want a JSON object")
    else:
        res = {}
    for section, vals in resources_from_flags(flags).items():
        res.setdefault(section, {}).update(vals)
    from runtime.validate import validate_config
    validate_config({"ociVersion": "1.3.0", "root": {"path": "rootfs"}, "linux": {"resources": res}})
    # The device rules stay as create set them, as with runc 1.1.5's
    # update. containerd sends the container's rules along with every
    # update (without the runtime's defaults, which create adds), and v1
    # can go from allow-all to an allow-list only through a deny-all
    # write, which would briefly deny devices both rule sets allow.
    res.pop("devices", None)
    with st.Lock(data["_dir"], cid):
        if st.status(data) == "stopped":
            raise InvalidState("container not running")
        return _manager(data).apply(res) or []


def events(root: str, cid: str, interval: float, once: bool, out=sys.stdout) -> None:
    """Print stats as JSON lines every `interval` seconds, and an "oom" event
    whenever the container hits its memory limit, until it stops."""
    import select
    data = st.load(root, cid)
    if st.status(data) == "stopped":
        raise RuntimeFailure(f"container with id {cid} is not running")  # runc's words
    m = _manager(data)
    if once:
        out.write(json.go_dumps({"type": "stats", "id": cid, "data": m.stats()}) + "\n")
        return
    watcher = None
    try:
        watcher = m.oom_watcher()
    except (OSError, RuntimeFailure, NotImplementedError):
        watcher = None
    try:
        next_stats = time.monotonic()
        while st.init_alive(data):
            now = time.monotonic()
            if now >= next_stats:
                out.write(json.go_dumps({"type": "stats", "id": cid, "data": m.stats()}) + "\n")
                out.flush()
                next_stats = now + interval
            timeout = max(0.0, min(next_stats - time.monotonic(), 0.5))
            if watcher is not None:
                r, _, _ = select.select([watcher.fileno()], [], [], timeout)
                if r and watcher.read():
                    out.write(json.go_dumps({"type": "oom", "id": cid}) + "\n")
                    out.flush()
            else:
                time.sleep(timeout)
    finally:
        if watcher is not None:
            watcher.close()


def features() -> dict:
    """runtime-spec features.md: what this build and host support."""
    from runtime import caps, rootfs
    from runtime.version import SPEC_VERSION, VERSION
    try:
        from runtime import seccomp
        sec = seccomp.features()
    except (OSError, ImportError, RuntimeFailure) as e:
        sec = {"enabled": False}
        del e
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": sorted(set(rootfs.MOUNT_FLAGS) | set(rootfs.PROPAGATION) | {"tmpcopyup"}),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps.NAMES[: caps.last_cap() + 1],
            "cgroup": cgroups.features(),
            "seccomp": sec,
            "apparmor": {"enabled": os.path.isdir("/sys/kernel/security/apparmor")},
            "selinux": {"enabled": os.path.isdir("/sys/fs/selinux")},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {
            "org.opencontainers.pyrunc.version": VERSION,
            "org.opencontainers.pyrunc.checkpoint.enabled": "false",
        },
    }
