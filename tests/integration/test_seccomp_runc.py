"""Cross-check runtime.seccomp against runc (the reference): the same
linux.seccomp object and the same busybox script must print the same
results under `runc run` and under our filter loaded in a forked child."""

import json
import os
import shutil
import subprocess
import uuid

import pytest

from runtime import seccomp

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
RUNC = shutil.which("runc")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(RUNC is None or not os.path.exists(BUSYBOX), reason="needs runc and busybox"),
]

# Each case: (linux.seccomp, shell script run in an empty work dir). Scripts
# print one line per probe; error text comes from strerror, so errnos show.
CASES = {
    "errno38": (
        {"defaultAction": "SCMP_ACT_ALLOW",
         "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]},
        'out=$(mkdir d 2>&1); echo "mkdir rc=$? $out"',
    ),
    "default-eperm-and-unknown-name": (
        {"defaultAction": "SCMP_ACT_ALLOW",
         "syscalls": [{"names": ["no_such_syscall_abc", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]},
        'out=$(mkdir d 2>&1); echo "mkdir rc=$? $out"',
    ),
    # Same arg index twice: runc splits into separate rules (OR), so modes
    # <= 0700 or >= 0750 are refused and only 0720 passes.
    "same-index-args": (
        {"defaultAction": "SCMP_ACT_ALLOW",
         "syscalls": [
             {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
              "args": [{"index": 1, "value": 0o750, "op": "SCMP_CMP_GE"},
                       {"index": 1, "value": 0o700, "op": "SCMP_CMP_LE"}]},
             {"names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
              "args": [{"index": 2, "value": 0o750, "op": "SCMP_CMP_GE"},
                       {"index": 2, "value": 0o700, "op": "SCMP_CMP_LE"}]}]},
        'mkdir d; for m in 700 720 755 777; do out=$(chmod $m d 2>&1); echo "$m rc=$? $out"; done',
    ),
    "masked-eq": (
        # refuse chmod when no group/other bits are set: (mode & 077) == 0
        {"defaultAction": "SCMP_ACT_ALLOW",
         "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                       "args": [{"index": 1, "value": 0o077, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                      {"names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                       "args": [{"index": 2, "value": 0o077, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]},
        'mkdir d; for m in 700 710 600 644; do out=$(chmod $m d 2>&1); echo "$m rc=$? $out"; done',
    ),
}


def _rootfs(path, extra=()):
    os.makedirs(os.path.join(path, "bin"))
    os.makedirs(os.path.join(path, "work"))
    shutil.copy(BUSYBOX, os.path.join(path, "bin", "busybox"))
    for name in ("sh", "mkdir", "chmod"):
        os.symlink("busybox", os.path.join(path, "bin", name))
    for src in extra:
        shutil.copy(src, os.path.join(path, "bin"))


def run_runc(tmp_path, sec, script, args=None, extra=()):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    _rootfs(str(bundle / "rootfs"), extra)
    subprocess.run([RUNC, "spec"], cwd=bundle, check=True)
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args or ["/bin/sh", "-c", script]
    cfg["process"]["cwd"] = "/work"
    cfg["root"]["readonly"] = False
    cfg["linux"]["seccomp"] = sec
    (bundle / "config.json").write_text(json.dumps(cfg))
    state = tmp_path / "runc-state"
    cid = "pyrunc-seccomp-" + uuid.uuid4().hex[:12]
    try:
        p = subprocess.run([RUNC, "--root", str(state), "run", "--bundle", str(bundle), cid],
                           capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run([RUNC, "--root", str(state), "delete", "-f", cid], capture_output=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def run_ours(tmp_path, sec, script, args=None):
    work = tmp_path / "ours"
    work.mkdir()
    f = seccomp.compile(sec)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(w, 1)
            os.chdir(work)
            seccomp.load(f)
            if args:
                os.execv(args[0], args)
            os.execv(BUSYBOX, ["sh", "-c", script])
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r) as fh:
        out = fh.read()
    _, status = os.waitpid(pid, 0)
    f.close()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_result_as_runc(tmp_path, case):
    sec, script = CASES[case]
    ours = run_ours(tmp_path, sec, script)
    theirs = run_runc(tmp_path, sec, script)
    assert ours == theirs
    # and the filter did something: without it every probe succeeds
    assert "rc=1" in ours


PROBE_C = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long rc = syscall(atol(argv[i]), 0, 0, 0, 0, 0, 0);
        printf("%s rc=%ld errno=%d\n", argv[i], rc, rc == -1 ? errno : 0);
    }
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the probe")
@pytest.mark.parametrize("archs", [["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], None])
def test_enosys_stub_same_as_runc(tmp_path, archs):
    from runtime import libseccomp as L
    if L.arch_native() != L.arch_resolve_name("x86_64"):
        pytest.skip("x86_64 syscall numbers")
    src = tmp_path / "probe.c"
    src.write_text(PROBE_C)
    probe = tmp_path / "probe"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(probe), str(src)], check=True)
    # allow every syscall libseccomp knows except uname and getrandom, so
    # runc's own init survives; the default is ERRNO(EPERM)
    names = {L.syscall_resolve_num_arch(0, nr) for nr in range(0, 1024)} - {None, "uname", "getrandom"}
    sec = {"defaultAction": "SCMP_ACT_ERRNO",
           "syscalls": [{"names": sorted(names), "action": "SCMP_ACT_ALLOW"}]}
    if archs:  # runc only adds the stub for listed architectures
        sec["architectures"] = archs
    probes = ["63", "318", "1000", "39"]  # uname, getrandom, past the table, getpid
    ours = run_ours(tmp_path, sec, None, args=[str(probe)] + probes)
    theirs = run_runc(tmp_path, sec, None, args=["/bin/probe"] + probes, extra=[str(probe)])
    lines = dict(line.split(" ", 1) for line in ours.splitlines())
    assert lines["63"] == "rc=-1 errno=1"      # denied by default action
    assert lines["318"] == "rc=-1 errno=1"
    # past every named syscall: ENOSYS from the stub, or the default without one
    assert lines["1000"] == ("rc=-1 errno=38" if archs else "rc=-1 errno=1")
    # getpid differs (pid namespace), the rest must match runc exactly
    assert ours.splitlines()[:3] == theirs.splitlines()[:3]


PROFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "imagetool", "seccomp_default.json")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the probe")
@pytest.mark.skipif(not os.path.exists(PROFILE), reason="no Docker-style default profile in the tree")
def test_docker_style_profile_same_as_runc(tmp_path):
    # a real-world profile: hundreds of names, arg rules, clone3 -> ENOSYS, 5 archs
    from runtime import libseccomp as L
    if L.arch_native() != L.arch_resolve_name("x86_64"):
        pytest.skip("x86_64 syscall numbers")
    with open(PROFILE) as fh:
        sec = {k: v for k, v in json.load(fh).items() if not k.startswith("_")}
    src = tmp_path / "probe.c"
    src.write_text(PROBE_C)
    probe = tmp_path / "probe"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(probe), str(src)], check=True)
    # unshare, clone3, mount, reboot, past the table, getppid
    probes = ["272", "435", "165", "169", "1000", "110"]
    ours = run_ours(tmp_path, sec, None, args=[str(probe)] + probes)
    theirs = run_runc(tmp_path, sec, None, args=["/bin/probe"] + probes, extra=[str(probe)])
    assert ours.splitlines()[:5] == theirs.splitlines()[:5]
    assert ours.splitlines()[4] == "1000 rc=-1 errno=38"
    assert ours.splitlines()[5].startswith("110 rc=")  # getppid allowed; value differs (pid ns)
    assert "errno=0" in ours.splitlines()[5]
