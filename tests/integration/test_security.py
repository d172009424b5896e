"""Attacks on the runtime from inside the container: each must fail loudly
if it succeeds."""
import os
import time


def _wait_running(rt, cid):
    for _ in range(200):
        if rt("state", cid).returncode == 0 and rt.state(cid)["status"] == "running":
            return
        time.sleep(0.02)
    raise AssertionError(f"{cid} not running")


def test_exec_entry_cannot_be_reached_through_proc_exe(rt, open_tmp):
    """CVE-2019-5736 class: while `pyrunc exec` enters the container, its
    process (still the host's Python) is non-dumpable, so a container process
    scanning /proc can neither resolve nor open its /proc/PID/exe."""
    out = open_tmp / "scan"
    out.mkdir()
    os.chmod(out, 0o777)
    scanner = ("while :; do for p in /proc/[0-9]*; do "
               "t=$(readlink $p/exe 2>/dev/null); case \"$t\" in *python*) echo \"GOT $p $t\" >> /out/log; "
               "cat $p/exe > /dev/null 2>&1 && echo \"OPENED $p\" >> /out/log;; esac; done; done")

    def m(c):
        c["mounts"].append({"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]})
    b = rt.bundle(["sh", "-c", scanner], mutate=m)
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    _wait_running(rt, cid)
    for _ in range(15):
        p = rt("exec", cid, "true")
        assert p.returncode == 0, p.stderr
    rt("delete", "--force", cid, check=True)
    log = (out / "log").read_text() if (out / "log").exists() else ""
    assert log == "", f"the container reached the runtime's executable:\n{log}"


def test_init_exe_not_reachable_while_created(rt):
    """Between create and start, the waiting init (the host's Python) is
    non-dumpable: another process joining its namespaces as an unprivileged
    user cannot read its /proc entries."""
    b = rt.bundle(["true"])
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    pid = rt.state(cid)["pid"]
    import subprocess
    probe = subprocess.run(["nsenter", "-t", str(pid), "-p", "-m", "-S", "65534", "-G", "65534",
                            "readlink", "/proc/1/exe"], capture_output=True, text=True)
    assert probe.returncode != 0 and "python" not in probe.stdout


def test_masked_path_replaced_by_symlink_does_not_expose_host(rt, tmp_path, busybox_rootfs):
    """A readonly/masked path that the image made a symlink to a host-looking
    path is handled after pivot_root: it can only name container paths."""
    import shutil
    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / "etc" / "secret-dir").mkdir()
    (rootfs / "etc" / "secret-dir" / "s").write_text("container secret")
    os.symlink("/etc/secret-dir", rootfs / "masked-link")
    os.symlink("/etc", rootfs / "ro-link")

    def m(c):
        c["root"]["readonly"] = False
        c["linux"]["maskedPaths"].append("/masked-link")
        c["linux"]["readonlyPaths"].append("/ro-link")
    b = rt.bundle(["sh", "-c", "ls /etc/secret-dir | wc -l; touch /etc/x 2>/dev/null && echo rw || echo ro"],
                  mutate=m, rootfs=str(rootfs))
    p = rt("run", "--bundle", b, rt.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "ro"]
    # The host's /etc was neither masked nor made read-only.
    assert os.path.exists("/etc/passwd")
    with open("/etc/.pyrunc-probe", "w") as f:
        f.write("x")
    os.unlink("/etc/.pyrunc-probe")
