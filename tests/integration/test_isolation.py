"""What a container sees from the inside, for each isolation feature, and the
attacks it must resist (escapes through symlinks, leaked fds)."""
import json
import os
import socket
import subprocess
import threading

import pytest


def run_in(rt, script, mutate=None, **proc):
    b = rt.bundle(["sh", "-c", script], mutate=mutate, **proc)
    p = rt("run", "--bundle", b, rt.new_id())
    return p


def out_of(rt, script, mutate=None, **proc):
    p = run_in(rt, script, mutate, **proc)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_hostname_domainname_uts(rt):
    def m(c):
        c["hostname"] = "box1"
        c["domainname"] = "example.org"
    out = out_of(rt, "hostname; cat /proc/sys/kernel/domainname", m)
    assert out.split() == ["box1", "example.org"]
    assert os.uname().nodename != "box1"


def test_namespaces_differ_from_host(rt):
    def m(c):
        c["linux"]["namespaces"] += [{"type": "cgroup"}, {"type": "time"}]
    out = out_of(rt, "for n in pid net mnt ipc uts cgroup time; do readlink /proc/self/ns/$n; done", m)
    inside = out.split()
    for n, link in zip(["pid", "net", "mnt", "ipc", "uts", "cgroup", "time"], inside):
        assert link != os.readlink(f"/proc/self/ns/{n}"), n


def test_joins_namespace_by_path(rt):
    host = subprocess.Popen(["unshare", "--uts", "sh", "-c", "hostname shared-uts; sleep 30"])
    try:
        import time
        for _ in range(500):
            seen = subprocess.run(["nsenter", "-t", str(host.pid), "-u", "hostname"],
                                  capture_output=True, text=True).stdout.strip()
            if seen == "shared-uts":
                break
            time.sleep(0.02)

        def m(c):
            c["linux"]["namespaces"] = [n if n["type"] != "uts" else {"type": "uts", "path": f"/proc/{host.pid}/ns/uts"}
                                        for n in c["linux"]["namespaces"]]
            c.pop("hostname", None)
        out = out_of(rt, "hostname; readlink /proc/self/ns/uts", m)
        name, link = out.split()
        assert name == "shared-uts"
        assert link == os.readlink(f"/proc/{host.pid}/ns/uts")
    finally:
        host.kill()
        host.wait()


def test_capabilities_all_five_sets(rt):
    caps = ["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"]

    def m(c):
        c["process"]["capabilities"] = {"bounding": caps + ["CAP_SYS_ADMIN"], "effective": caps,
                                        "permitted": caps, "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]}
        c["process"]["noNewPrivileges"] = True
    out = out_of(rt, "grep -E '^(Cap|NoNewPrivs)' /proc/self/status", m)
    vals = dict(line.split(":\t") for line in out.strip().splitlines())
    bit = {"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_NET_RAW": 13, "CAP_SYS_ADMIN": 21}
    mask = lambda names: sum(1 << bit[n] for n in names)  # noqa: E731
    assert int(vals["CapBnd"], 16) == mask(caps + ["CAP_SYS_ADMIN"])
    assert int(vals["CapEff"], 16) == mask(caps)
    assert int(vals["CapPrm"], 16) == mask(caps)
    assert int(vals["CapInh"], 16) == mask(["CAP_KILL"])
    assert int(vals["CapAmb"], 16) == mask(["CAP_KILL"])
    assert vals["NoNewPrivs"] == "1"


def test_capability_missing_from_host_bounding_set_is_a_warning(rt):
    """CAP_SYS_RESOURCE is not in this machine's bounding set: the spec says
    a capability that cannot be granted is logged as a warning, not fatal."""
    with open("/proc/self/status") as f:
        bnd = int([line for line in f if line.startswith("CapBnd")][0].split()[1], 16)
    if bnd >> 24 & 1:
        pytest.skip("CAP_SYS_RESOURCE is available here")

    def m(c):
        c["process"]["capabilities"]["permitted"].append("CAP_SYS_RESOURCE")
        c["process"]["capabilities"]["bounding"].append("CAP_SYS_RESOURCE")
    p = run_in(rt, "grep CapPrm /proc/self/status", m)
    assert p.returncode == 0, p.stderr
    assert "CAP_SYS_RESOURCE" in p.stderr and "warning" in p.stderr
    assert not int(p.stdout.split()[1], 16) >> 24 & 1


def test_user_ids_groups_umask_cwd_env(rt):
    def m(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 65534], "umask": 0o027}
        c["process"]["cwd"] = "/tmp"
        c["process"]["env"] = ["PATH=/bin", "FOO=bar baz"]
    out = out_of(rt, "id -u; id -g; id -G; umask; pwd; echo \"$FOO\"", m)
    lines = out.strip().split("\n")
    assert lines[0] == "1000" and lines[1] == "1000"
    assert set(lines[2].split()) == {"1000", "5", "65534"}
    assert lines[3] == "0027"
    assert lines[4] == "/tmp"
    assert lines[5] == "bar baz"


def test_rlimits_and_oom_score(rt):
    def m(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                                   {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
        c["process"]["oomScoreAdj"] = 500
    out = out_of(rt, "ulimit -Sn; ulimit -Hn; ulimit -c; cat /proc/self/oom_score_adj", m)
    assert out.split() == ["100", "200", "0", "500"]


def test_rlimit_above_hard_limit_fails_naming_it(rt):
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def m(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]
    p = run_in(rt, "true", m)
    assert p.returncode == 1 and "RLIMIT_NOFILE" in p.stderr


def test_masked_and_readonly_paths(rt):
    out = out_of(rt, "cat /proc/keys | wc -c; ls /sys/firmware | wc -l; "
                     "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo writable || echo ro; "
                     "grep ' /proc/sys ' /proc/self/mountinfo | grep -c ' ro,'")
    assert out.split() == ["0", "0", "ro", "1"]


def test_readonly_root_and_mount_options(rt, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "f").write_text("host data")

    def m(c):
        c["mounts"].append({"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "ro"]})
        c["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                            "options": ["nosuid", "nodev", "size=1m", "mode=1777"]})
    out = out_of(rt, "cat /data/f; echo; touch /data/x 2>/dev/null && echo data-rw || echo data-ro; "
                     "touch /newfile 2>/dev/null && echo root-rw || echo root-ro; "
                     "touch /scratch/ok && echo scratch-rw; grep ' /scratch ' /proc/self/mountinfo", m)
    lines = out.strip().split("\n")
    assert lines[:4] == ["host data", "data-ro", "root-ro", "scratch-rw"]
    assert "nosuid" in lines[4] and "nodev" in lines[4] and "size=1024k" in lines[4]
    assert not (src / "x").exists()


def test_mount_propagation_option_on_bind(rt, tmp_path):
    """Docker's /etc/hosts style mount: rbind + rprivate."""
    src = tmp_path / "hosts"
    src.write_text("127.0.0.1 localhost\n")

    def m(c):
        c["mounts"].append({"destination": "/etc/hosts", "type": "bind", "source": str(src),
                            "options": ["rbind", "rprivate"]})
    assert "localhost" in out_of(rt, "cat /etc/hosts", m)


def test_symlinked_mount_destination_stays_in_rootfs(rt, tmp_path, busybox_rootfs):
    """A destination that is a symlink to a host path is resolved inside the rootfs."""
    import shutil
    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("untouched")
    os.symlink(str(victim), rootfs / "evil")           # absolute link to a host dir
    os.symlink("../../../../" + str(victim), rootfs / "evil2")  # relative escape

    def m(c):
        c["root"]["readonly"] = False
        c["mounts"].append({"destination": "/evil", "type": "tmpfs", "source": "tmpfs"})
        c["mounts"].append({"destination": "/evil2", "type": "tmpfs", "source": "tmpfs"})
    b = rt.bundle(["sh", "-c", "touch /evil/pwned /evil2/pwned; ls /evil /evil2"], mutate=m, rootfs=str(rootfs))
    p = rt("run", "--bundle", b, rt.new_id())
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(victim)) == ["keep"]
    # The tmpfs landed inside the rootfs, at the link's target resolved from the rootfs.
    assert os.path.isdir(rootfs / str(victim).lstrip("/"))


def test_devices_created(rt):
    def m(c):
        c["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                  "fileMode": 0o640, "uid": 0, "gid": 5}]
    out = out_of(rt, "stat -c '%n %t:%T %a %g' /dev/null /dev/zero /dev/urandom /dev/tty /dev/fuse; "
                     "for l in ptmx fd stdin; do readlink /dev/$l; done; echo x > /dev/null && echo ok", m)
    lines = out.strip().split("\n")
    assert lines[0] == "/dev/null 1:3 666 0"
    assert lines[4] == "/dev/fuse a:e5 640 5"
    assert lines[5:8] == ["pts/ptmx", "/proc/self/fd", "/proc/self/fd/0"]
    assert lines[8] == "ok"


def test_sysctl(rt):
    def m(c):
        c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.msgmax": "12345"}
    assert out_of(rt, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax", m).split() == ["1", "12345"]


def test_only_stdio_reaches_container(rt):
    """Host fds open in the caller (not marked inheritable by us) never reach the container."""
    b = rt.bundle(["sh", "-c", "ls /proc/self/fd"])
    r, w = os.pipe()
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    try:
        p = rt("run", "--bundle", b, rt.new_id(), close_fds=False)
    finally:
        os.close(r)
        os.close(w)
    assert p.returncode == 0, p.stderr
    # 0, 1, 2 and the fd of ls's own directory listing.
    assert len(p.stdout.split()) <= 4
    assert all(int(x) <= 3 for x in p.stdout.split())


def test_preserve_fds(rt, tmp_path):
    f = tmp_path / "passed"
    f.write_text("through fd 3")
    fd = os.open(str(f), os.O_RDONLY)
    try:
        b = rt.bundle(["sh", "-c", "cat <&3"])
        # Put the file at fd 3 in pyrunc's process only (pytest owns our fd 3).
        p = rt("run", "--preserve-fds", "1", "--bundle", b, rt.new_id(), pass_fds=(fd, 3),
               preexec_fn=lambda: os.dup2(fd, 3))
    finally:
        os.close(fd)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "through fd 3"


def test_no_host_cwd_leak(rt, tmp_path):
    """CVE-2024-21626 class: the process cwd is inside the container."""
    out = out_of(rt, "readlink /proc/self/cwd; ls /proc/self/cwd/.. | head -3", cwd="/")
    assert out.split("\n")[0] == "/"


def test_waiting_init_runs_from_a_sealed_copy(rt, tmp_path):
    """While init waits for start it is pyrunc-exec run from a memfd sealed
    against writes: its /proc/PID/exe names no host file, and a handle to it
    can change nothing (the CVE-2019-5736 attack in
    test_exe_protection.py). A container process of another uid still
    cannot read init's /proc files."""
    import fcntl
    b = rt.bundle(["true"])
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    pid = rt.state(cid)["pid"]
    assert os.readlink(f"/proc/{pid}/exe").startswith("/memfd:pyrunc-exec")
    probe = subprocess.run(["nsenter", "-t", str(pid), "-p", "-m", "--setuid", "65534", "--setgid", "65534",
                            "cat", "/proc/1/environ"], capture_output=True, text=True)
    assert probe.returncode != 0
    fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY)
    try:
        F_GET_SEALS, F_SEAL_SEAL, F_SEAL_WRITE, F_SEAL_GROW = 1034, 1, 8, 4
        seals = fcntl.fcntl(fd, F_GET_SEALS)
        assert seals & (F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW) == F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW
        rt("start", cid, check=True)
        rt.wait_status(cid, "stopped")
        # Nothing runs the copy now, so no ETXTBSY: the seals alone refuse.
        w = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
        try:
            with pytest.raises(PermissionError):
                os.write(w, b"\0")
        finally:
            os.close(w)
    finally:
        os.close(fd)


def test_terminal_via_console_socket(rt, tmp_path):
    sockpath = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sockpath)
    srv.listen(1)
    got = {}

    def accept():
        conn, _ = srv.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        got["fd"] = fds[0]
        conn.close()
    t = threading.Thread(target=accept)
    t.start()
    b = rt.bundle(["sh", "-c", "tty; stty size; echo from-the-pty"], terminal=True,
                  consoleSize={"height": 30, "width": 100})
    cid = rt.new_id()
    rt("create", "--console-socket", sockpath, "--bundle", b, cid, check=True)
    t.join(10)
    assert "fd" in got
    rt("start", cid, check=True)
    out = b""
    while True:
        try:
            chunk = os.read(got["fd"], 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(got["fd"])
    srv.close()
    text = out.decode()
    assert "/dev/pts/0" in text
    assert "30 100" in text
    assert "from-the-pty" in text


def test_terminal_without_console_socket_refused(rt):
    b = rt.bundle(["true"], terminal=True)
    cid = rt.new_id()
    p = rt("create", "--bundle", b, cid)
    assert p.returncode == 1 and "console socket" in p.stderr
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_user_namespace_mapping(rt, open_tmp, busybox_rootfs):
    import shutil
    rootfs = open_tmp / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), 100000, 100000)
    os.chown(rootfs, 100000, 100000)

    def m(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["mounts"] = [x for x in c["mounts"] if x["destination"] not in ("/sys", "/sys/fs/cgroup")]
    b = rt.bundle(["sh", "-c", "id -u; cat /proc/self/uid_map; sleep 2"], mutate=m, rootfs=str(rootfs))
    cid = rt.new_id()
    p = rt("run", "--bundle", b, cid)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "100000", "65536"]


def test_user_namespace_host_view(rt, tmp_path, busybox_rootfs):
    def m(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 1000}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 1000}]
        c["mounts"] = [x for x in c["mounts"] if x["destination"] not in ("/sys", "/sys/fs/cgroup")]
    b = rt.bundle(["sleep", "30"], mutate=m)
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    pid = rt.state(cid)["pid"]
    with open(f"/proc/{pid}/status") as f:
        uid_line = [line for line in f if line.startswith("Uid:")][0]
    assert uid_line.split()[1:] == ["200000"] * 4
    rt("delete", "--force", cid, check=True)


def test_time_namespace_offsets(rt):
    def m(c):
        c["linux"]["namespaces"].append({"type": "time"})
        c["linux"]["timeOffsets"] = {"boottime": {"secs": 864000, "nanosecs": 0},
                                     "monotonic": {"secs": 86400, "nanosecs": 0}}
    out = out_of(rt, "cat /proc/uptime", m)
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    assert float(out.split()[0]) >= host + 864000 - 5


def test_hooks_order_state_and_namespaces(rt, tmp_path):
    log = tmp_path / "hooks.log"
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\n"
                    f"echo \"$1 $(cat | tr -d '\\n' | sed 's/.*\"status\": *\"\\([a-z]*\\)\".*/\\1/') "
                    f"$(readlink /proc/self/ns/mnt)\" >> {log}\n")
    hook.chmod(0o755)
    kinds = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]

    def m(c):
        c["hooks"] = {k: [{"path": str(hook), "args": ["hook", k], "env": ["X=1"]}] for k in kinds}
        # The container-side hooks run in its mount namespace: the host path
        # of the hook is visible there only before pivot_root (createContainer)
        # or through a bind mount (startContainer).
        c["mounts"].append({"destination": str(tmp_path), "type": "bind", "source": str(tmp_path),
                            "options": ["rbind"]})
    b = rt.bundle(["true"], mutate=m)
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    rt("start", cid, check=True)
    import time
    for _ in range(200):
        if rt.state(cid)["status"] == "stopped":
            break
        time.sleep(0.02)
    rt("delete", cid, check=True)
    lines = [line.split() for line in log.read_text().strip().split("\n")]
    assert [x[0] for x in lines] == kinds
    host_mnt = os.readlink("/proc/self/ns/mnt")
    by = {x[0]: x for x in lines}
    assert by["prestart"][2] == host_mnt and by["createRuntime"][2] == host_mnt
    assert by["poststart"][2] == host_mnt and by["poststop"][2] == host_mnt
    assert by["createContainer"][2] != host_mnt and by["startContainer"][2] != host_mnt
    assert by["prestart"][1] == "created"
    assert by["poststop"][1] == "stopped"


def test_failing_prestart_hook_aborts_create(rt, tmp_path):
    def m(c):
        c["hooks"] = {"prestart": [{"path": "/bin/false"}]}
    b = rt.bundle(["true"], mutate=m)
    cid = rt.new_id()
    p = rt("create", "--bundle", b, cid)
    assert p.returncode == 1 and "prestart" in p.stderr
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_hook_timeout(rt, tmp_path):
    def m(c):
        c["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}
    b = rt.bundle(["true"], mutate=m)
    cid = rt.new_id()
    p = rt("create", "--bundle", b, cid)
    assert p.returncode == 1 and "hook ran past specified timeout of 1.0s" in p.stderr
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_failing_poststop_hook_is_only_a_warning(rt):
    def m(c):
        c["hooks"] = {"poststop": [{"path": "/bin/false"}]}
    b = rt.bundle(["true"], mutate=m)
    p = rt("run", "--bundle", b, rt.new_id())
    assert p.returncode == 0
    assert "poststop" in p.stderr


BAD_INPUTS = [
    ("malformed json", None, "invalid JSON"),
    ("schema", lambda c: c["process"].update(user={"uid": -1, "gid": 0}), "process.user.uid"),
    ("rootfs", lambda c: c["root"].update(path="/nonexistent/rootfs"), "root.path"),
    ("namespace", lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "linux.namespaces"),
    ("hook", lambda c: c.update(hooks={"prestart": [{"path": "/etc/passwd"}]}), "hooks.prestart[0].path"),
    ("mount source", lambda c: c["mounts"].append({"destination": "/x", "type": "bind",
                                                   "source": "/no/such/dir", "options": ["bind"]}),
     "/no/such/dir"),
    ("selinux label", lambda c: c["process"].update(selinuxLabel="system_u:system_r:container_t:s0"),
     "process.selinuxLabel"),
    ("apparmor", lambda c: c["process"].update(apparmorProfile="docker-default"), "process.apparmorProfile"),
    ("namespace path", lambda c: c["linux"]["namespaces"].append({"type": "time", "path": "/no/ns"}), "/no/ns"),
]


@pytest.mark.parametrize("name,mutate,needle", BAD_INPUTS, ids=[x[0] for x in BAD_INPUTS])
def test_bad_input_one_line_nothing_left(rt, name, mutate, needle):
    from runtime.config import apparmor_enabled
    if name == "apparmor" and apparmor_enabled():
        pytest.skip("this host has AppArmor: the profile may well apply")
    b = rt.bundle(["true"], mutate=mutate)
    if mutate is None:
        with open(os.path.join(b, "config.json"), "a") as f:
            f.write("}{")
    cid = rt.new_id()
    p = rt("create", "--bundle", b, cid)
    assert p.returncode == 1
    lines = p.stderr.strip().split("\n")
    assert len(lines) == 1, p.stderr
    assert needle in lines[0]
    assert not os.path.exists(os.path.join(rt.root, cid))
    mounts = open("/proc/self/mountinfo").read()
    assert rt.rootfs not in mounts and b not in mounts and cid not in mounts
    leftovers = subprocess.run(["find", "/sys/fs/cgroup", "-maxdepth", "4", "-name", cid],
                               capture_output=True, text=True).stdout
    assert leftovers == ""
    json  # noqa: B018


def test_idmapped_bind_mount(rt, open_tmp):
    """An idmap bind mount shows host-root files as owned by container root
    in a user namespace (where they would otherwise be nobody)."""
    data = open_tmp / "data"
    data.mkdir()
    (data / "f").write_text("x")
    os.chown(data / "f", 0, 0)
    maps = [{"containerID": 0, "hostID": 300000, "size": 65536}]

    def m(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = maps
        c["linux"]["gidMappings"] = maps
        c["mounts"] = [x for x in c["mounts"] if x["destination"] not in ("/sys", "/sys/fs/cgroup")]
        c["mounts"].append({"destination": "/tmp/plain", "type": "bind", "source": str(data), "options": ["rbind"]})
        c["mounts"].append({"destination": "/tmp/mapped", "type": "bind", "source": str(data),
                            "options": ["rbind", "idmap"]})
    p = run_in(rt, "stat -c %u /tmp/plain/f /tmp/mapped/f", m)
    if p.returncode != 0 and "idmapped" in p.stderr:
        pytest.skip(f"kernel/filesystem refuses idmapped mounts: {p.stderr.strip()}")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["65534", "0"]


def test_personality_scheduler_iopriority(rt):
    def m(c):
        c["linux"]["personality"] = {"domain": "LINUX32"}
        c["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
        c["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 6}
    out = out_of(rt, "uname -m; grep -E '^policy' /proc/self/sched | tr -d ' '; "
                     "cut -d' ' -f19 /proc/self/stat; ionice -p $$", m)
    lines = out.strip().split("\n")
    assert lines[0] in ("i686", "armv8l", "armv7l")
    assert lines[1] == "policy:3"
    assert lines[2] == "5"
    assert "prio 6" in lines[3]


def test_no_pivot(rt):
    p = rt("run", "--no-pivot", "--bundle", rt.bundle(["sh", "-c", "ls /; readlink /proc/1/root"]), rt.new_id())
    assert p.returncode == 0, p.stderr
    assert "bin" in p.stdout.split() and "/" in p.stdout.split()


def test_foreground_run_owns_the_terminal(rt):
    """`pyrunc run` with process.terminal and no console socket proxies a pty."""
    from bundles import run_in_pty
    b = rt.bundle(["sh", "-c", "tty; read line; echo got:$line"], terminal=True)
    code, out = run_in_pty([rt.binary, "--root", rt.root, "run", "--bundle", b, rt.new_id()],
                           timeout=10, answer=(b"/dev/pts/", b"hello\n"))
    assert code == 0, out
    assert b"/dev/pts/0" in out
    assert b"got:hello" in out


def test_seccomp_errno_in_container(rt):
    def m(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                               "errnoRet": 38}]}
    out = out_of(rt, "mkdir /tmp/nope 2>&1; grep Seccomp: /proc/self/status", m)
    assert "Function not implemented" in out
    assert "Seccomp:\t2" in out


def test_seccomp_notify_listener_gets_fd_and_state(rt, tmp_path):
    sockpath = str(tmp_path / "listener.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sockpath)
    srv.listen(1)
    got = {}

    def accept():
        conn, _ = srv.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 65536, 4)
        got["state"] = json.loads(msg)
        got["fds"] = fds
        conn.close()
    t = threading.Thread(target=accept)
    t.start()

    def m(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sockpath,
                                 "listenerMetadata": "hello-meta",
                                 "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}
    b = rt.bundle(["true"], mutate=m)
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    t.join(10)
    srv.close()
    assert got["state"]["fds"] == ["seccompFd"]
    assert got["state"]["metadata"] == "hello-meta"
    assert got["state"]["state"]["id"] == cid
    assert got["state"]["pid"] == rt.state(cid)["pid"]
    assert len(got["fds"]) == 1
    assert os.readlink(f"/proc/self/fd/{got['fds'][0]}") == "anon_inode:seccomp notify"
    for fd in got["fds"]:
        os.close(fd)
