"""The runtimes under test, each with a private --root, and the busybox bundle."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

import harness as H

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYRUNC = os.path.join(REPO, ".venv", "bin", "pyrunc")


class CrunNamespace:
    """A long-lived mount namespace without /sys/fs/cgroup/unified: crun 1.8
    refuses hybrid cgroup layouts. We setns() into it between fork and exec,
    so crun pays no extra exec for it."""

    def __init__(self):
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             "umount /sys/fs/cgroup/unified 2>/dev/null || umount -l /sys/fs/cgroup/unified; "
             "echo ready; exec sleep infinity"],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline()
        if b"ready" not in line:
            raise RuntimeError("could not prepare a mount namespace for crun")
        self.fd = os.open(f"/proc/{self.proc.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)

    def close(self):
        try:
            os.close(self.fd)
        except OSError:
            pass
        # Popen's own wait would race the reaper thread: signal only; the
        # reaper collects it.
        H.kill_pid(self.proc.pid)


class Runtime:
    def __init__(self, name: str, exe: str, root: str, mntns_fd: int | None = None):
        self.name, self.exe, self.root, self.mntns_fd = name, exe, root, mntns_fd
        os.makedirs(root, exist_ok=True)
        # stderr of calls that leave an init behind (no pipe possible): a file
        self.errlog = root.rstrip("/") + ".stderr"
        self.failures: list[str] = []

    def argv(self, *args):
        return [self.exe, "--root", self.root, *args]

    def spawn(self, *args, capture=True):
        if capture:
            return H.spawn(self.argv(*args), mntns_fd=self.mntns_fd)
        fd = os.open(self.errlog, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            return H.spawn(self.argv(*args), mntns_fd=self.mntns_fd, capture=False, stderr_fd=fd)
        finally:
            os.close(fd)

    def last_stderr(self) -> str:
        try:
            with open(self.errlog, errors="replace") as f:
                return f.read().strip()[-500:]
        except OSError:
            return ""

    def run(self, *args, capture=True, check=True) -> H.Result:
        r = self.spawn(*args, capture=capture).wait(300)
        if r.rc != 0 and not capture:
            r.err = self.last_stderr().encode()
        if r.rc != 0:
            self.failures.append(f"{args[0]}: exit {r.rc}: {r.err.decode(errors='replace').strip()[-300:]}")
        return r.check() if check else r

    # Calls that may leave a container init behind must not capture: the
    # init would inherit the pipes.
    def create(self, cid, bundle, pid_file, check=True) -> H.Result:
        return self.run("create", "--bundle", bundle, "--pid-file", pid_file, cid,
                        capture=False, check=check)

    def ids(self) -> list[str]:
        try:
            return [e for e in os.listdir(self.root) if os.path.isdir(os.path.join(self.root, e))]
        except FileNotFoundError:
            return []

    def cleanup(self):
        """Force-delete every container in our private root, then the root.
        Safety net: kill any process still naming our root on its command
        line (a pyrunc init whose state was lost), and remove cgroups the
        containers left behind."""
        ids = self.ids()
        for cid in ids:
            self.run("delete", "--force", cid, check=False)
        for pid in os.listdir("/proc"):
            if pid.isdigit() and int(pid) != os.getpid():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if self.root.encode() + b"\0" in f.read():
                            H.kill_pid(int(pid))
                except OSError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)
        try:
            os.unlink(self.errlog)
        except OSError:
            pass


def make_busybox_rootfs(rootfs: str) -> None:
    os.makedirs(os.path.join(rootfs, "bin"), exist_ok=True)
    for d in ("proc", "sys", "dev", "tmp", "etc", "root"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    bb = os.path.join(rootfs, "bin", "busybox")
    shutil.copy2("/bin/busybox", bb)
    applets = H.run([bb, "--list"]).check().out.decode().split()
    for a in applets:
        if a == "busybox":
            continue
        link = os.path.join(rootfs, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\n")


def make_bundle(path: str, args=("/bin/true",)) -> str:
    """A busybox bundle whose config.json comes from `runc spec`."""
    os.makedirs(path, exist_ok=True)
    make_busybox_rootfs(os.path.join(path, "rootfs"))
    cfg_path = os.path.join(path, "config.json")
    if os.path.exists(cfg_path):
        os.unlink(cfg_path)
    H.run(["runc", "spec", "--bundle", path]).check()
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = list(args)
    cfg["process"]["terminal"] = False
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)
    return path


def state_dir() -> str:
    """Where the runtimes keep their --root: on tmpfs like their defaults
    (/run/runc, /run/crun, /run/pyrunc; containerd uses /run/containerd/runc)."""
    d = make_tmp("pyrunc-bench-root-", "/run" if os.path.isdir("/run") else "/tmp")
    # /run is tmpfs on a usual host but may be a plain disk directory (as on
    # this CI machine): mount a small tmpfs so state writes cost what they
    # cost in production (ext4 flushes on rename-over, for one).
    if os.environ.get("PYRUNC_BENCH_STATE_ON_DISK"):
        return d
    if H.run(["mount", "-t", "tmpfs", "-o", "size=1g,mode=0700", "pyrunc-bench", d]).rc == 0:
        H.CLEANUP.push(lambda: H.run(["umount", "-l", d]))
    return d


def wait_pid_file(path: str, timeout=10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                s = f.read().strip()
            if s:
                return int(s)
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no pid in {path}")
        time.sleep(0.001)


def make_tmp(prefix="pyrunc-bench-", where="/tmp") -> str:
    d = tempfile.mkdtemp(prefix=prefix, dir=where)
    H.CLEANUP.push(shutil.rmtree, d, ignore_errors=True)
    return d
