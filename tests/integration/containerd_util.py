"""Helpers for running pyrunc under a private containerd (and dockerd).

    Containerd(base).start()     containerd with its own config.toml: root,
                                 state and sockets under `base` (a short temp
                                 dir), CRI disabled. .ctr(...) runs ctr
                                 against it; .stop() stops it.
    Containerd(base, cri=cri_plugin_toml(...), netns=FILE, path=[DIR, ...])
                                 the same with the CRI plugin on, run inside
                                 the network namespace bound at FILE
                                 (make_netns), with PATH=DIR:... (where it
                                 finds shim binaries).
    make_netns(path)             a new network namespace bound at path, lo up.
    write_docker_archive(...)    a `docker save` archive for `ctr images import`.
    Containerd.cleanup_namespace(ns)
                                 kill and delete every task and container of
                                 a namespace, then its images (used in
                                 finally blocks, so tests leave nothing).
    shim_pids(address)           pids of containerd-shim-runc-v2 processes
                                 started by the containerd at `address`.
    any_shim_pids(address)       every shim of that containerd, any binary.
    mounts_under(path)           mount points at or below path.
    cgroup_dirs_named(name)      every cgroup directory (v1 and v2) whose
                                 basename is name.
    kill_shims / unmount_all     last-resort cleanup.
    runtime_state(runc_root, ns, cid)
                                 the state file the runtime wrote for a task.

Everything is real: the containerd, shim, registry and pyrunc processes are
the installed binaries; nothing is mocked.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYRUNC = os.environ.get("PYRUNC", os.path.join(REPO, ".venv", "bin", "pyrunc"))
CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
CTR = shutil.which("ctr") or "/usr/bin/ctr"
SHIM = "containerd-shim-runc-v2"
PYRUNC_SHIM = "containerd-shim-pyrunc-v1"
PYRUNC_SHIM_RUNTIME = "io.containerd.pyrunc.v1"
PYRUNC_SHIM_ROOT = "/run/containerd/pyrunc"  # its default runtime root (+ /NAMESPACE)
CGROUP_ROOT = "/sys/fs/cgroup"


def short_tmpdir(prefix: str = "pcd") -> str:
    """A temp dir with a short path: unix socket paths must stay < 108 bytes."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


# --------------------------------------------------------------------------
# system inspection
# --------------------------------------------------------------------------

def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def pids_matching(pred) -> list[int]:
    out = []
    for n in os.listdir("/proc"):
        if n.isdigit():
            cl = _cmdline(int(n))
            if cl and pred(cl):
                out.append(int(n))
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def is_pyrunc_shim(pid: int, cl: list[str]) -> bool:
    """containerd-shim-pyrunc-v1's serving process: its launcher runs the
    interpreter on runtime.shim.main, and it names itself pyrunc-shim (a
    shim forked by its zygote keeps the zygote's command line; the forks
    that become a container's init or an exec do not have that name)."""
    return (bool(cl) and any("runtime.shim.main" in a for a in cl[1:8])
            and _comm(pid) == "pyrunc-shim")


def shim_pids(address: str, cid: str | None = None, kind: str | None = None) -> list[int]:
    """Shim processes of the containerd listening on `address`, optionally
    only the one serving container `cid`: containerd-shim-runc-v2 by its
    `-address ADDR` and `-id CID` arguments; containerd-shim-pyrunc-v1 by
    its cwd, the task's bundle under that containerd's state dir
    (BASE/state for Containerd(BASE), whose socket is BASE/c.sock).
    kind: "runc" or "pyrunc" for one kind only."""
    tasks = os.path.join(os.path.dirname(address), "state", "io.containerd.runtime.v2.task")
    found = []
    for n in os.listdir("/proc"):
        if not n.isdigit():
            continue
        pid = int(n)
        cl = _cmdline(pid)
        if not cl:
            continue
        if os.path.basename(cl[0]) == SHIM:
            if kind not in (None, "runc"):
                continue
            if address in cl and (cid is None or ("-id" in cl and cl[cl.index("-id") + 1] == cid)):
                found.append(pid)
        elif kind in (None, "pyrunc") and is_pyrunc_shim(pid, cl):
            cwd = _cwd(pid)
            if cwd.startswith(tasks + "/") and (cid is None or os.path.basename(cwd.split(" (deleted)")[0]) == cid):
                found.append(pid)
    # pyrunc's shim forks the container's init (and exec stages), which
    # keep its name and command line until they exec: not shims themselves.
    return [p for p in found if ppid(p) not in found]


def shim_socket(address: str, ns: str, group: str) -> str:
    """The socket path both shims bind for a task group (containerd's
    convention: sha256 of ADDRESS/NS/GROUP under /run/containerd/s)."""
    return "/run/containerd/s/" + hashlib.sha256(os.path.join(address, ns, group).encode()).hexdigest()


def alive(pid: int) -> bool:
    """pid runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def any_shim_pids(address: str, cid: str | None = None) -> list[int]:
    """Every shim of the containerd at `address`, of either kind."""
    return shim_pids(address, cid)


def mounts_under(path: str) -> list[str]:
    path = os.path.realpath(path).rstrip("/")
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return out


def unmount_all(path: str) -> None:
    """Lazily unmount everything at or below path, deepest first."""
    for mp in sorted(set(mounts_under(path)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def cgroup_dirs_named(name: str) -> list[str]:
    """Cgroup directories called `name`, searched a few levels deep in every
    hierarchy (containerd puts tasks at /<namespace>/<id>, docker at
    /docker/<id>)."""
    found = []
    if not os.path.isdir(CGROUP_ROOT):
        return found

    def walk(d, depth):
        try:
            entries = os.scandir(d)
        except OSError:
            return
        with entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    if e.name == name:
                        found.append(e.path)
                    if depth < 3:
                        walk(e.path, depth + 1)

    walk(CGROUP_ROOT, 0)
    return found


def remove_cgroup_tree(name_at_top: str) -> None:
    """rmdir /sys/fs/cgroup/*/NAME (and the v2/unified one) bottom-up if
    empty: the per-namespace parents containerd's default cgroupsPath makes."""
    tops = [os.path.join(CGROUP_ROOT, name_at_top)]
    try:
        for h in os.listdir(CGROUP_ROOT):
            tops.append(os.path.join(CGROUP_ROOT, h, name_at_top))
    except OSError:
        pass
    for top in tops:
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        for dp, _dn, _fn in sorted(os.walk(top), key=lambda t: len(t[0]), reverse=True):
            try:
                os.rmdir(dp)
            except OSError:
                pass


def kill_pids(pids, sig=signal.SIGKILL, wait=10.0) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    end = time.monotonic() + wait
    for p in pids:
        while time.monotonic() < end and os.path.exists(f"/proc/{p}") and not _is_zombie(p):
            time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        return raw[raw.rindex(b")") + 2:raw.rindex(b")") + 3] in (b"Z", b"X")
    except OSError:
        return True


def runtime_state(runc_root: str, ns: str, cid: str) -> dict | None:
    """The runtime's state file for a task (the shim runs the runtime with
    --root RUNC_ROOT/NAMESPACE), pyrunc's or runc's: both keep it as
    ROOT/ID/state.json. None if there is none."""
    try:
        with open(os.path.join(runc_root, ns, cid, "state.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def is_pyrunc_state(st: dict) -> bool:
    """pyrunc's state: version/id/pid/start_time/bundle. runc's has
    init_process_pid/config instead, so this tells them apart."""
    return (isinstance(st, dict) and st.get("version") == 1 and "start_time" in st
            and "bundle" in st and "init_process_pid" not in st)


def wait_for(pred, timeout=20.0, interval=0.05, what="condition"):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


# --------------------------------------------------------------------------
# containerd
# --------------------------------------------------------------------------

CONFIG_TEMPLATE = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{ttrpc}"

[debug]
  address = "{debug}"
  level = "debug"

[metrics]
  address = ""
"""


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(str(v))  # a TOML basic string is a JSON string


def cri_plugin_toml(*, sandbox_image: str, runtimes: dict, default_runtime: str, cni_conf_dir: str,
                    cni_bin_dir: str = "/usr/lib/cni", stream_port: int = 10010, **more) -> str:
    """The [plugins."io.containerd.grpc.v1.cri"] section (containerd 1.6's
    names). runtimes: {handler: {"runtime_type": ..., "options": {...}}}.
    Nothing in it reaches a network: the sandbox image must be imported
    beforehand (it is used as found, never pulled), and the pods' network
    is what the CNI config in cni_conf_dir sets up. Pod netns bind mounts
    go under containerd's state dir, not the host's /var/run/netns.
    `more` adds top-level keys of the section (e.g. disable_cgroup=True)."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    settings = {"sandbox_image": sandbox_image, "disable_apparmor": True, "enable_selinux": False,
                "stream_server_address": "127.0.0.1", "stream_server_port": str(stream_port),
                "netns_mounts_under_state_dir": True, "disable_tcp_service": True,
                # the sandbox's oom_score_adj (-998) only as low as containerd's own:
                # lowering it needs CAP_SYS_RESOURCE, which a container host may lack
                "restrict_oom_score_adj": True, **more}
    lines = [f"[{cri}]"] + [f"  {k} = {_toml(v)}" for k, v in settings.items()]
    lines += [f"[{cri}.containerd]", '  snapshotter = "overlayfs"',
              f"  default_runtime_name = {_toml(default_runtime)}"]
    for name, rt in runtimes.items():
        lines.append(f"[{cri}.containerd.runtimes.{_toml(name)}]")
        lines.append(f"  runtime_type = {_toml(rt['runtime_type'])}")
        if rt.get("options"):
            lines.append(f"[{cri}.containerd.runtimes.{_toml(name)}.options]")
            lines += [f"  {k} = {_toml(v)}" for k, v in rt["options"].items()]
    lines += [f"[{cri}.cni]", f"  bin_dir = {_toml(cni_bin_dir)}", f"  conf_dir = {_toml(cni_conf_dir)}",
              "  max_conf_num = 1"]
    return "\n".join(lines) + "\n"


def make_netns(path: str) -> str:
    """A new network namespace kept alive by a bind mount at `path` (a
    file, created), with its loopback up. Remove it by unmounting path."""
    open(path, "a").close()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True, capture_output=True)
    subprocess.run(["nsenter", f"--net={path}", "ip", "link", "set", "lo", "up"], check=True,
                   capture_output=True)
    return path


class Containerd:
    """A private containerd. Sockets: BASE/c.sock (grpc), BASE/t.sock,
    BASE/d.sock. Data: BASE/root, BASE/state. Log: BASE/containerd.log."""

    def __init__(self, base: str, *, cri: str | None = None, netns: str | None = None,
                 path: list[str] = ()):
        """cri: the CRI plugin's config section (cri_plugin_toml), or None
        for no CRI plugin; netns: a netns file (make_netns) that containerd,
        and so its shims and CNI plugins, run in; path: containerd's PATH
        (where it looks for shim binaries), if not ours."""
        self.base = base
        self.cri = cri
        self.netns = netns
        self.path = list(path)
        self.root = os.path.join(base, "root")
        self.state = os.path.join(base, "state")
        self.address = os.path.join(base, "c.sock")
        self.config = os.path.join(base, "config.toml")
        self.log_path = os.path.join(base, "containerd.log")
        self.proc: subprocess.Popen | None = None
        if len(self.address.encode()) >= 100:
            raise ValueError(f"socket path too long: {self.address}")

    def start(self, timeout=30.0) -> "Containerd":
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.state, exist_ok=True)
        with open(self.config, "w") as f:
            f.write(CONFIG_TEMPLATE.format(root=self.root, state=self.state, sock=self.address,
                                           ttrpc=os.path.join(self.base, "t.sock"),
                                           debug=os.path.join(self.base, "d.sock"),
                                           disabled="" if self.cri else '"io.containerd.grpc.v1.cri"'))
            if self.cri:
                f.write("\n" + self.cri)
        cmd = [CONTAINERD, "--config", self.config]
        if self.netns:
            cmd = [shutil.which("nsenter") or "/usr/bin/nsenter", f"--net={self.netns}", "--", *cmd]
        env = None
        if self.path:
            env = dict(os.environ, PATH=os.pathsep.join(self.path))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True, env=env)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited {self.proc.returncode}: {self.log_tail()}")
            if os.path.exists(self.address):
                p = self.ctr("version", timeout=10)
                if p.returncode == 0:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"containerd did not come up: {self.log_tail()}")

    def log_tail(self, n=4000) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def ctr_cmd(self, *args, ns: str | None = None) -> list[str]:
        cmd = [CTR, "--address", self.address]
        if ns:
            cmd += ["--namespace", ns]
        return cmd + [str(a) for a in args]

    def ctr(self, *args, ns: str | None = None, timeout=120, input=None, check=False,
            **kw) -> subprocess.CompletedProcess:
        """Run ctr; stdout/stderr go through temp files (a detached task's
        shim must not hold our pipes open)."""
        cmd = self.ctr_cmd(*args, ns=ns)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            if input is None:
                kw.setdefault("stdin", subprocess.DEVNULL)
            p = subprocess.run(cmd, stdout=out, stderr=err, text=True, input=input,
                               timeout=timeout, **kw)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n"
                                 f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    # -- cleanup ----------------------------------------------------------

    def task_list(self, ns: str) -> dict[str, tuple[int, str]]:
        """{container id: (pid, status)} from `ctr task ls`."""
        p = self.ctr("task", "ls", ns=ns, timeout=30)
        out = {}
        for line in p.stdout.splitlines()[1:]:
            f = line.split()
            if len(f) >= 3:
                out[f[0]] = (int(f[1]) if f[1].isdigit() else 0, f[2])
        return out

    def container_list(self, ns: str) -> list[str]:
        p = self.ctr("containers", "ls", "-q", ns=ns, timeout=30)
        return [ln.strip() for ln in p.stdout.splitlines() if ln.strip()]

    def cleanup_namespace(self, ns: str, images=True) -> list[str]:
        """Remove every task, container (and its snapshot) and optionally
        image of namespace ns. Returns notes on what had to be forced."""
        notes = []
        if self.proc is None or self.proc.poll() is not None:
            return notes
        for cid, (pid, status) in self.task_list(ns).items():
            notes.append(f"task {cid} left {status}")
            if status == "PAUSED":
                self.ctr("task", "resume", cid, ns=ns, timeout=30)
            self.ctr("task", "kill", "-a", "-s", "SIGKILL", cid, ns=ns, timeout=30)
            try:
                wait_for(lambda: self.task_list(ns).get(cid, (0, "STOPPED"))[1] == "STOPPED",
                         timeout=10, what=f"task {cid} to stop")
            except AssertionError:
                if pid:
                    kill_pids([pid])
            p = self.ctr("task", "delete", "-f", cid, ns=ns, timeout=30)
            if p.returncode != 0:
                notes.append(f"task delete {cid}: {p.stderr.strip()}")
        for cid in self.container_list(ns):
            notes.append(f"container {cid} left")
            p = self.ctr("containers", "delete", cid, ns=ns, timeout=30)
            if p.returncode != 0:
                notes.append(f"container delete {cid}: {p.stderr.strip()}")
        if images:
            p = self.ctr("images", "ls", "-q", ns=ns, timeout=30)
            refs = [r for r in p.stdout.split() if r]
            if refs:
                self.ctr("images", "rm", "--sync", *refs, ns=ns, timeout=60)
        return notes

    def stop(self) -> None:
        """Stop containerd, then any shim of ours it left (shims outlive
        containerd by design), then unmount what is still mounted below BASE."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_pids(any_shim_pids(self.address))
        unmount_all(self.base)

    def destroy(self) -> None:
        """stop() and remove BASE."""
        self.stop()
        unmount_all(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


# --------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------

EXTRA_APPLETS = ("tty", "id", "ps", "wc", "grep", "hostname", "printf", "test", "stty",
                 "head", "tr", "env", "pwd", "kill", "mount", "readlink", "touch")


def busybox_image_layers() -> list[bytes]:
    """Two layers: registry_util's busybox layer plus one with more applet
    links and /etc/passwd, /etc/group (so the overlay snapshotter stacks two
    lower dirs)."""
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from registry_util import busybox_layer, make_layer
    extra = make_layer(
        {"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
         "etc/group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
         "root/.keep": ""},
        symlinks={f"bin/{n}": "busybox" for n in EXTRA_APPLETS},
        dirs=["proc", "sys", "dev", "tmp", "root"])
    return [busybox_layer(), extra]


def write_docker_archive(path: str, name: str, layers: list[bytes], config: dict) -> str:
    """A `docker save` archive of one image (uncompressed layers) tagged
    `name`, which `ctr images import` stores under that name (normalized:
    docker.io/library/... for a short name)."""
    import hashlib
    import io
    import tarfile
    blobs = {}
    layer_names = []
    for layer in layers:
        n = f"{hashlib.sha256(layer).hexdigest()}/layer.tar"
        blobs[n] = layer
        layer_names.append(n)
    cfg = json.dumps(config).encode()
    cfg_name = f"{hashlib.sha256(cfg).hexdigest()}.json"
    blobs[cfg_name] = cfg
    blobs["manifest.json"] = json.dumps([{"Config": cfg_name, "RepoTags": [name],
                                          "Layers": layer_names}]).encode()
    with tarfile.open(path, "w") as tf:
        for n, data in blobs.items():
            ti = tarfile.TarInfo(n)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_600_000_000
            tf.addfile(ti, io.BytesIO(data))
    return path


def push_busybox(registry_host: str, repo: str = "busybox", tag: str = "latest", *,
                 cmd=None, media: str = "oci") -> str:
    """Push the two-layer busybox image; returns 'HOST/REPO:TAG'."""
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from registry_util import make_config, push_image
    layers = busybox_image_layers()
    cfg = make_config(layers, cmd=cmd or ["sh"])
    push_image(registry_host, repo, tag, layers=layers, config=cfg, media=media)
    return f"{registry_host}/{repo}:{tag}"


# --------------------------------------------------------------------------
# driving a command through a pseudo-terminal
# --------------------------------------------------------------------------

class PtyProcess:
    """Run a command with a new pty as its stdin/stdout/stderr and
    controlling terminal (what `ctr run -t` needs: it puts the terminal in
    raw mode and relays it to the container's console)."""

    def __init__(self, cmd: list[str], env=None, rows=24, cols=80):
        import fcntl
        import struct
        import termios
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

        def ctty():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, preexec_fn=ctty, env=env,
                                     close_fds=True)
        os.close(slave)
        self.buf = b""

    def _read_some(self, timeout: float) -> bool:
        import select
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every slave fd is closed
            return False
        if not data:
            return False
        self.buf += data
        return True

    def expect(self, needle: bytes, timeout: float = 30.0) -> bytes:
        """Read until needle appears in the output; returns all output so far."""
        end = time.monotonic() + timeout
        while needle not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen on the terminal; got {self.buf!r}")
            if not self._read_some(min(left, 0.5)) and needle not in self.buf:
                if self.proc.poll() is not None:
                    raise AssertionError(f"process exited ({self.proc.returncode}) before "
                                         f"{needle!r} appeared; got {self.buf!r}")
        return self.buf

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 30.0) -> int:
        """Drain output until the process exits; returns its exit status."""
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            self._read_some(0.2)
        try:
            return self.proc.wait(max(0.1, end - time.monotonic()))
        finally:
            while self._read_some(0):
                import select
                if not select.select([self.master], [], [], 0)[0]:
                    break

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            os.close(self.master)
        except OSError:
            pass
