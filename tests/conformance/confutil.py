"""Helpers of the conformance suite (imported by conftest.py and the tests)."""
import json
import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bundles import Runtime, make_rootfs  # noqa: E402,F401  (make_rootfs re-exported)

# What the reference runtimes installed here do not implement (runc 1.1.5
# predates runtime-spec 1.2): tests of these features skip for them.
REFERENCE_GAPS = {
    "runc": {"timeOffsets", "ioPriority", "scheduler", "personality", "netDevices",
             "execCPUAffinity", "idmap", "domainname"},
    "crun": set(),
}


def mountinfo(text: str) -> list[dict]:
    """Parse /proc/self/mountinfo text into dicts (mount point, options, ...)."""
    res = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        res.append({
            "id": int(f[0]), "parent": int(f[1]), "devno": f[2], "root": f[3],
            "mountpoint": f[4].replace("\\040", " "), "opts": set(f[5].split(",")),
            "optional": f[6:], "fstype": r[0] if r else "", "source": r[1] if len(r) > 1 else "",
            "super_opts": set(r[2].split(",")) if len(r) > 2 else set(),
        })
    return res


def mount_at(info: list[dict], path: str) -> dict | None:
    """The mount visible at `path` (the last one stacked there)."""
    hits = [m for m in info if m["mountpoint"] == path]
    return hits[-1] if hits else None


class ConfRuntime(Runtime):
    """Runtime with helpers for the conformance tests.

    create() gives the container files (not pipes) as stdio so that the
    runtime's create returns while the container lives on."""

    def __init__(self, tmp_path, rootfs, name, binary):
        super().__init__(tmp_path, rootfs, binary=binary)
        self.name = name
        self.out = os.path.join(self.tmp, "out")
        os.makedirs(self.out, exist_ok=True)
        os.chmod(self.out, 0o777)  # writable for non-root container users
        self.extra_cleanup: list = []

    # --- features ---------------------------------------------------------
    def require(self, feature: str) -> None:
        if feature in REFERENCE_GAPS.get(self.name, set()):
            pytest.skip(f"{self.name} (reference) does not implement {feature}")

    # --- bundles ----------------------------------------------------------
    def bundle(self, args=None, name=None, mutate=None, rootfs=None, out=True, **proc) -> str:
        """A bundle over the probe rootfs; with out=True the host directory
        self.out is bind-mounted read-write at /out."""
        def mut(cfg):
            if out:
                cfg["mounts"].append({"destination": "/out", "type": "bind", "source": self.out,
                                      "options": ["rbind", "rw"]})
            if mutate:
                mutate(cfg)
        return super().bundle(args=args, name=name, mutate=mut, rootfs=rootfs, **proc)

    def probe_bundle(self, probe_args=(), mutate=None, name="probe", **kw) -> str:
        args = ["/bin/probe", "-o", f"/out/{name}.json", *probe_args]
        return self.bundle(args=args, mutate=mutate, **kw)

    # --- operations -------------------------------------------------------
    def create(self, bundle, cid=None, *extra, timeout=60):
        """`create --bundle B ID` with stdio on files. Returns (cid, proc)."""
        cid = cid or self.new_id()
        logf = os.path.join(self.tmp, f"{cid}.stdout")
        errf = os.path.join(self.tmp, f"{cid}.stderr")
        with open(os.devnull) as devnull, open(logf, "ab") as o, open(errf, "w+") as e:
            p = subprocess.run([self.binary, "--root", self.root, "create", "--bundle", bundle, *extra, cid],
                               stdin=devnull, stdout=o, stderr=e, text=True, timeout=timeout)
            e.seek(0)
            p.stderr = e.read()
        return cid, p

    def create_ok(self, bundle, *extra) -> str:
        cid, p = self.create(bundle, None, *extra)
        assert p.returncode == 0, f"{self.name} create failed ({p.returncode}): {p.stderr}"
        return cid

    def run_fg(self, bundle, cid=None, timeout=60):
        """`run --bundle B ID` in the foreground; stdout/stderr captured."""
        cid = cid or self.new_id()
        with open(os.devnull) as devnull:
            p = subprocess.run([self.binary, "--root", self.root, "run", "--bundle", bundle, cid],
                               stdin=devnull, capture_output=True, text=True, timeout=timeout)
        return cid, p

    def wait_stopped(self, cid, timeout=20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            s = self.state(cid)
            if s["status"] == "stopped" or time.monotonic() > deadline:
                return s
            time.sleep(0.05)

    def probe(self, probe_args=(), mutate=None, name="probe", expect_ok=True, **kw) -> dict:
        """Run the probe in a fresh container (foreground run) and return its JSON."""
        b = self.probe_bundle(probe_args, mutate=mutate, name=name, **kw)
        cid, p = self.run_fg(b)
        path = os.path.join(self.out, f"{name}.json")
        if expect_ok:
            assert p.returncode == 0, f"{self.name} run failed ({p.returncode}): {p.stderr}{p.stdout}"
        self("delete", "--force", cid)
        if not os.path.exists(path):
            raise AssertionError(f"probe wrote nothing; run rc={p.returncode} stderr={p.stderr}")
        with open(path) as f:
            data = json.load(f)
        os.unlink(path)
        data["_run"] = p
        data["_cid"] = cid
        return data

    def cleanup(self) -> None:
        for cid in self.ids:
            try:
                self("delete", "--force", cid, timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for fn in reversed(self.extra_cleanup):
            try:
                fn()
            except Exception:  # noqa: BLE001 - best effort, the assert below reports leaks
                pass
        left = os.listdir(self.root) if os.path.isdir(self.root) else []
        assert not left, f"containers left in {self.root}: {left}"



def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}


def caps_to_mask(names) -> int:
    m = 0
    for n in names:
        m |= 1 << CAP_NUMBERS[n]
    return m
