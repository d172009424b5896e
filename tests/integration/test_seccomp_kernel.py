"""Kernel tests for runtime.seccomp: each test forks a child, loads a filter
there, tries syscalls and reports back through a pipe (JSON) or its exit
status. No container is needed. Needs root (CAP_SYS_ADMIN) because our
filters never set no_new_privs."""

import ctypes
import errno
import fcntl
import json
import os
import resource
import select
import signal
import socket
import threading

import pytest

from runtime import libseccomp as L
from runtime import seccomp

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="loading without no_new_privs needs root"),
]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def raw_syscall(name, *args):
    """syscall(2) by name with up to 6 integer args -> ("ok", ret) / ("err", errno).
    Lets us call e.g. getppid with arbitrary args: the kernel ignores them but
    the seccomp filter sees them."""
    nr = L.syscall_resolve_name(name)
    ctypes.set_errno(0)
    rc = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    if rc == -1:
        return ["err", ctypes.get_errno()]
    return ["ok", rc]


def attempt(fn, *a):
    try:
        return ["ok", fn(*a)]
    except OSError as e:
        return ["err", e.errno]


def run_child(cfg, body, pre=None):
    """Compile ``cfg`` in the parent, fork, load it in the child, run body()
    there. Returns (wait status, JSON result of body or None).
    The child never returns into pytest (os._exit)."""
    f = seccomp.compile(cfg)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGSYS would dump core
            if pre:
                pre()
            seccomp.load(f)
            out = json.dumps(body()).encode()
            os.write(w, out)
        except BaseException as e:  # report, never unwind into pytest
            try:
                os.write(w, json.dumps(["exception", repr(e)]).encode())
            except BaseException:
                pass
            code = 99
        os._exit(code)
    os.close(w)
    try:
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    except BaseException:  # e.g. pytest-timeout: don't leave the child behind
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
        f.close()
    data = b"".join(chunks)
    return status, (json.loads(data) if data else None)


def ok_exit(status, result):
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, result)
    return result


def allow(default="SCMP_ACT_ALLOW", **kw):
    c = {"defaultAction": default}
    c.update(kw)
    return c


# ------------------------------------------------------------------ ERRNO

@pytest.mark.parametrize("errno_ret", [errno.ENOSYS, errno.EPERM])
def test_errno_rule(tmp_path, errno_ret):
    cfg = allow(syscalls=[{"names": ["mkdir", "mkdirat", "getcwd"], "action": "SCMP_ACT_ERRNO",
                           "errnoRet": errno_ret}])
    target = str(tmp_path / "d")
    res = ok_exit(*run_child(cfg, lambda: [attempt(os.mkdir, target), attempt(os.getcwd),
                                           attempt(os.getpid), attempt(os.listdir, str(tmp_path))]))
    assert res[0] == ["err", errno_ret]
    assert res[1] == ["err", errno_ret]
    assert res[2][0] == "ok"
    assert res[3] == ["ok", []]
    assert not os.path.exists(target)


def test_errno_default_eperm():
    cfg = allow(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}])
    assert ok_exit(*run_child(cfg, lambda: attempt(os.getcwd))) == ["err", errno.EPERM]


def test_errno_zero_skips_syscall(tmp_path):
    # errnoRet 0: the syscall "succeeds" without running
    target = str(tmp_path / "d")
    cfg = allow(syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0}])
    assert ok_exit(*run_child(cfg, lambda: attempt(os.mkdir, target))) == ["ok", None]
    assert not os.path.exists(target)


# The minimum a CPython child needs to compute a result and write it to the pipe.
_PY_MIN = ["write", "exit", "exit_group", "brk", "mmap", "munmap", "mremap", "madvise",
           "rt_sigprocmask", "rt_sigreturn", "futex"]


@pytest.mark.parametrize("default_errno", [None, errno.ENOSYS])
def test_default_errno_with_allow_list(default_errno):
    cfg = allow("SCMP_ACT_ERRNO", syscalls=[{"names": _PY_MIN + ["getpid", "getppid"],
                                             "action": "SCMP_ACT_ALLOW"}])
    if default_errno is not None:
        cfg["defaultErrnoRet"] = default_errno
    me = os.getpid()
    res = ok_exit(*run_child(cfg, lambda: [os.getppid(), attempt(os.getcwd), attempt(os.uname)]))
    expect = default_errno or errno.EPERM
    assert res[0] == me
    assert res[1] == ["err", expect]
    assert res[2] == ["err", expect]


def test_long_rule_set_uses_binary_tree():
    # > 32 rules switches libseccomp to binary-tree dispatch; semantics must hold
    names = ["getcwd", "uname", "chdir", "fchdir", "mknod", "mknodat", "link", "linkat",
             "symlink", "symlinkat", "rename", "renameat", "renameat2", "truncate", "ftruncate",
             "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat", "utime",
             "utimes", "futimesat", "utimensat", "sethostname", "setdomainname", "swapon",
             "swapoff", "acct", "settimeofday", "adjtimex", "syslog", "vhangup"]
    cfg = allow(syscalls=[{"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS}])
    with seccomp.compile(cfg) as f:
        assert f.rules == len(names)
        assert L.attr_get(f.ctx, L.FLTATR_CTL_OPTIMIZE) == 2
    res = ok_exit(*run_child(cfg, lambda: [attempt(os.getcwd), attempt(os.uname),
                                           attempt(os.getpid), attempt(os.chdir, "/")]))
    assert res[0] == ["err", errno.EROFS]
    assert res[1] == ["err", errno.EROFS]
    assert res[2][0] == "ok"
    assert res[3] == ["err", errno.EROFS]


def test_unknown_names_skipped_rest_enforced():
    cfg = allow(syscalls=[{"names": ["this_is_no_syscall", "getcwd"], "action": "SCMP_ACT_ERRNO",
                           "errnoRet": errno.EIO}])
    assert ok_exit(*run_child(cfg, lambda: attempt(os.getcwd))) == ["err", errno.EIO]


# ------------------------------------------------------------ arg conditions

def test_personality_query_allowed_others_denied():
    # like Docker's profile: only allow personality(0xffffffff) (query)
    cfg = allow(syscalls=[{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                           "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_NE"}]}])
    res = ok_exit(*run_child(cfg, lambda: [raw_syscall("personality", 0xFFFFFFFF),
                                           raw_syscall("personality", 0)]))
    assert res[0][0] == "ok"
    assert res[1] == ["err", errno.EPERM]


OPS = [
    # op, value, valueTwo, probe, denied?
    ("SCMP_CMP_EQ", 7, 0, 7, True),
    ("SCMP_CMP_EQ", 7, 0, 8, False),
    ("SCMP_CMP_NE", 7, 0, 8, True),
    ("SCMP_CMP_NE", 7, 0, 7, False),
    ("SCMP_CMP_LT", 7, 0, 6, True),
    ("SCMP_CMP_LT", 7, 0, 7, False),
    ("SCMP_CMP_LE", 7, 0, 7, True),
    ("SCMP_CMP_LE", 7, 0, 8, False),
    ("SCMP_CMP_GE", 7, 0, 7, True),
    ("SCMP_CMP_GE", 7, 0, 6, False),
    ("SCMP_CMP_GT", 7, 0, 8, True),
    ("SCMP_CMP_GT", 7, 0, 7, False),
    ("SCMP_CMP_MASKED_EQ", 0xF0, 0x20, 0x25, True),     # (0x25 & 0xf0) == 0x20
    ("SCMP_CMP_MASKED_EQ", 0xF0, 0x20, 0x15, False),
    ("SCMP_CMP_GT", 0xFFFFFFFF, 0, 0x100000000, True),   # 64-bit compare, high word
    ("SCMP_CMP_GT", 0xFFFFFFFF, 0, 0xFFFFFFFF, False),
    ("SCMP_CMP_EQ", 0x1_0000_0005, 0, 5, False),        # low word equal, high differs
]


@pytest.mark.parametrize("op, value, value2, probe, denied", OPS)
def test_operators(op, value, value2, probe, denied):
    arg = {"index": 0, "value": value, "op": op}
    if op == "SCMP_CMP_MASKED_EQ":
        arg["valueTwo"] = value2
    cfg = allow(syscalls=[{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33,
                           "args": [arg]}])
    res = ok_exit(*run_child(cfg, lambda: raw_syscall("getppid", probe)))
    if denied:
        assert res == ["err", 33]
    else:
        assert res == ["ok", os.getpid()]


def test_conditions_on_distinct_args_are_anded():
    cfg = allow(syscalls=[{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33,
                           "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                                    {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]}])
    res = ok_exit(*run_child(cfg, lambda: [raw_syscall("getppid", 1, 2), raw_syscall("getppid", 1, 3),
                                           raw_syscall("getppid", 0, 2)]))
    assert res == [["err", 33], ["ok", os.getpid()], ["ok", os.getpid()]]


def test_same_index_conditions_are_ored_like_runc():
    # runc turns repeated indexes into one rule per condition: deny if
    # arg0 < 10 OR arg0 > 100 (an AND would never match)
    cfg = allow(syscalls=[{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33,
                           "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_LT"},
                                    {"index": 0, "value": 100, "op": "SCMP_CMP_GT"}]}])
    res = ok_exit(*run_child(cfg, lambda: [raw_syscall("getppid", 5), raw_syscall("getppid", 50),
                                           raw_syscall("getppid", 200)]))
    assert res == [["err", 33], ["ok", os.getpid()], ["err", 33]]
    # NE 5 / GE 100: with OR, 6 is denied (with AND it would pass)
    cfg["syscalls"][0]["args"] = [{"index": 0, "value": 5, "op": "SCMP_CMP_NE"},
                                  {"index": 0, "value": 100, "op": "SCMP_CMP_GE"}]
    res = ok_exit(*run_child(cfg, lambda: [raw_syscall("getppid", 5), raw_syscall("getppid", 6)]))
    assert res == [["ok", os.getpid()], ["err", 33]]


# ---------------------------------------------------------- other actions

@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                                    "SCMP_ACT_TRAP"])
def test_kill_and_trap_deliver_sigsys(action):
    cfg = allow(syscalls=[{"names": ["getcwd"], "action": action}])
    status, res = run_child(cfg, lambda: attempt(os.getcwd))
    assert res is None  # never got to report
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


def test_kill_process_kills_all_threads():
    # KILL_PROCESS ends the whole thread group; KILL_THREAD only the caller
    def body():
        tid = []
        t = threading.Thread(target=lambda: (tid.append(threading.get_native_id()), os.getcwd()))
        t.start()
        # A thread killed by seccomp never tells Python it finished, so
        # join() would hang: watch its /proc entry instead (bounded poll).
        for _ in range(3000):
            if tid and not os.path.exists(f"/proc/self/task/{tid[0]}"):
                return "survived"
            threading.Event().wait(0.01)
        return "thread still there"
    status, res = run_child(allow(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_KILL_PROCESS"}]),
                            body)
    assert res is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
    status, res = run_child(allow(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_KILL_THREAD"}]),
                            body)
    assert ok_exit(status, res) == "survived"


def test_log_allows():
    cfg = allow(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_LOG"}])
    assert ok_exit(*run_child(cfg, lambda: attempt(os.getcwd))) == ["ok", os.getcwd()]
    cfg = allow("SCMP_ACT_LOG", syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}])
    res = ok_exit(*run_child(cfg, lambda: [attempt(os.getcwd), attempt(os.getpid)]))
    assert res[0] == ["err", errno.EPERM] and res[1][0] == "ok"


def test_trace_without_tracer_is_enosys():
    # no ptracer attached: the kernel fails the syscall with ENOSYS whatever errnoRet says
    cfg = allow(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_TRACE", "errnoRet": 5}])
    assert ok_exit(*run_child(cfg, lambda: attempt(os.getcwd))) == ["err", errno.ENOSYS]


# ------------------------------------------------------- attributes, flags

def _status_field(name):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()


def test_load_does_not_set_no_new_privs():
    cfg = allow(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}])
    assert _status_field("NoNewPrivs") == "0"
    res = ok_exit(*run_child(cfg, lambda: [_status_field("NoNewPrivs"), _status_field("Seccomp")]))
    assert res == ["0", "2"]  # filter mode, NNP untouched


def _drop_to_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)  # clears all capabilities


X86_ARCHS = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
needs_x86_64 = pytest.mark.skipif(L.arch_native() != 0xC000003E, reason="x86_64 syscall numbers")

# default ERRNO + architectures: load() takes the -ENOSYS stub path
PATCHED = allow("SCMP_ACT_ERRNO", architectures=X86_ARCHS,
                syscalls=[{"names": _PY_MIN + ["getpid", "getppid", "sendmsg", "sendto", "close"],
                           "action": "SCMP_ACT_ALLOW"}])


@pytest.mark.parametrize("path", ["libseccomp", "patched"])
def test_load_without_cap_sys_admin_fails_clearly(path):
    if path == "patched":
        cfg = PATCHED
        assert seccomp.compile(cfg).enosys
    else:
        cfg = allow(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}])

    def try_load_as_nobody():
        _drop_to_nobody()
        with seccomp.compile(cfg) as f:
            try:
                seccomp.load(f)
            except OSError as e:
                first = [e.errno, str(e)]
            else:
                first = None
            # with no_new_privs set by the caller it works
            assert _libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
            seccomp.load(f)
            return [first, attempt(os.getcwd)]

    # compile and load happen inside the unprivileged child here
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.write(w, json.dumps(try_load_as_nobody()).encode())
            os._exit(0)
        except BaseException as e:
            os.write(w, repr(e).encode())
            os._exit(99)
    os.close(w)
    data = os.read(r, 65536)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, data
    first, after = json.loads(data)
    assert first[0] == errno.EACCES
    assert "CAP_SYS_ADMIN" in first[1]
    assert after == ["err", errno.EPERM]


@pytest.mark.parametrize("with_tsync", [True, False])
def test_tsync_filters_other_threads(with_tsync):
    flags = ["SECCOMP_FILTER_FLAG_TSYNC"] if with_tsync else []
    cfg = allow(flags=flags, syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO",
                                        "errnoRet": errno.ENOSYS}])
    go = threading.Event()
    out = []

    def worker():
        go.wait()
        out.append(attempt(os.getcwd))

    holder = {}

    def pre():  # thread exists before the filter is loaded
        holder["t"] = threading.Thread(target=worker)
        holder["t"].start()

    def body():
        go.set()
        holder["t"].join()
        return [out[0], attempt(os.getcwd)]

    res = ok_exit(*run_child(cfg, body, pre=pre))
    assert res[1] == ["err", errno.ENOSYS]
    if with_tsync:
        assert res[0] == ["err", errno.ENOSYS]
    else:
        assert res[0][0] == "ok"


@pytest.mark.parametrize("flag", ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                  "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
def test_supported_flags_load(flag):
    supported = flag in seccomp.features()["supportedFlags"]
    cfg = allow(flags=[flag], syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}])
    if not supported:
        with pytest.raises(ValueError, match=flag):
            seccomp.compile(cfg)
        return
    assert ok_exit(*run_child(cfg, lambda: attempt(os.getcwd))) == ["err", 5]


def test_multi_arch_filter_loads():
    cfg = allow(architectures=["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_X86_64"],
                syscalls=[{"names": ["getcwd", "socketcall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}])
    if L.arch_native() != L.arch_resolve_name("x86_64"):
        pytest.skip("x86_64 only")
    assert ok_exit(*run_child(cfg, lambda: attempt(os.getcwd))) == ["err", 5]


# ------------------------------------------------------------------ NOTIFY

class SeccompData(ctypes.Structure):
    _fields_ = [("nr", ctypes.c_int), ("arch", ctypes.c_uint32),
                ("instruction_pointer", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6)]


class SeccompNotif(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("data", SeccompData)]


class SeccompNotifResp(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("val", ctypes.c_int64), ("error", ctypes.c_int32),
                ("flags", ctypes.c_uint32)]


def _iowr(nr, size):
    # _IOWR('!', nr, size) on the generic ioctl layout (x86, arm, riscv...)
    return (3 << 30) | (size << 16) | (ord("!") << 8) | nr


NOTIF_RECV = _iowr(0, ctypes.sizeof(SeccompNotif))
NOTIF_SEND = _iowr(1, ctypes.sizeof(SeccompNotifResp))


def _patched_notify(flags):
    c = json.loads(json.dumps(PATCHED))
    c["flags"] = flags
    c["syscalls"][0]["names"].remove("getppid")
    c["syscalls"].append({"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"})
    return c


@pytest.mark.parametrize("flags, patched", [([], False), (["SECCOMP_FILTER_FLAG_TSYNC"], False),
                                            ([], True), (["SECCOMP_FILTER_FLAG_TSYNC"], True)])
def test_notify_listener(flags, patched):
    if patched:
        if L.arch_native() != 0xC000003E:
            pytest.skip("x86_64 syscall names")
        cfg = _patched_notify(flags)
    else:
        cfg = allow(flags=flags, syscalls=[{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}])
    assert seccomp.uses_notify(cfg)
    f = seccomp.compile(cfg)
    assert bool(f.enosys) == patched
    psock, csock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            psock.close()
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            fd = seccomp.load(f)
            socket.send_fds(csock, [b"F"], [fd])
            os.close(fd)  # the caller owns the fd
            v = os.getppid()  # blocks until the parent answers
            csock.sendall(json.dumps([v, attempt(os.getcwd)]).encode())
        except BaseException as e:
            csock.sendall(json.dumps(["exception", repr(e)]).encode())
            code = 99
        os._exit(code)
    csock.close()
    nfd = None
    done = False
    try:
        msg, fds, _, _ = socket.recv_fds(psock, 16, 1)
        assert msg == b"F" and len(fds) == 1
        nfd = fds[0]
        # safety net against a hang if the child never traps; not a timing assertion
        readable, _, _ = select.select([nfd], [], [], 60)
        assert readable, "no seccomp notification arrived"
        req = SeccompNotif()
        fcntl.ioctl(nfd, NOTIF_RECV, req)
        assert req.pid == pid
        assert req.data.nr == L.syscall_resolve_name("getppid")
        assert req.data.arch == L.arch_native()
        resp = SeccompNotifResp(id=req.id, val=4242, error=0, flags=0)
        fcntl.ioctl(nfd, NOTIF_SEND, resp)
        data = b""
        while True:
            b = psock.recv(4096)
            if not b:
                break
            data += b
        done = True
    finally:
        if not done:
            os.kill(pid, signal.SIGKILL)
        if nfd is not None:
            os.close(nfd)
        psock.close()
        _, status = os.waitpid(pid, 0)
        f.close()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, data
    v, cwd = json.loads(data)
    assert v == 4242  # the value the listener chose
    # not a NOTIFY syscall: untouched, or the default action when patched
    assert cwd == (["err", errno.EPERM] if patched else ["ok", os.getcwd()])


def test_load_without_notify_returns_none():
    cfg = allow(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}])
    f = seccomp.compile(cfg)
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if seccomp.load(f) is None else 1)
        except BaseException:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    f.close()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.parametrize("patched", [False, True])
def test_second_notify_load_in_same_process_is_refused(patched):
    if patched:
        if L.arch_native() != 0xC000003E:
            pytest.skip("x86_64 syscall names")
        cfg = _patched_notify([])
        cfg["syscalls"][0]["names"] += ["getrandom", "memfd_create", "lseek", "pread64", "ioctl",
                                        "fcntl", "newfstatat", "fstat", "prctl", "seccomp"]
    else:
        cfg = allow(syscalls=[{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}])

    def body():
        # the first listener was created by run_child's load(); libseccomp keeps it
        with seccomp.compile(cfg) as g:
            return attempt(seccomp.load, g)

    res = ok_exit(*run_child(cfg, body))
    assert res == ["err", errno.EBUSY]


# --------------------------------------------------------- -ENOSYS stub

@needs_x86_64
def test_enosys_for_syscalls_newer_than_profile():
    # highest syscall in PATCHED is exit_group (231)
    def body():
        return [raw_syscall("getppid"), raw_syscall("uname", 0), raw_syscall("getrandom", 0, 0, 0),
                raw_syscall_nr(1000), raw_syscall_nr(63 | 0x40000000)]
    res = ok_exit(*run_child(PATCHED, body))
    assert res[0] == ["ok", os.getpid()]
    assert res[1] == ["err", errno.EPERM]    # below the highest named: default action
    assert res[2] == ["err", errno.ENOSYS]   # 318 > 231: "too new for this profile"
    assert res[3] == ["err", errno.ENOSYS]
    # x32 uname (63 | x32 bit) is below the x32 maximum: on to the filter's default
    assert res[4] == ["err", errno.EPERM]


def raw_syscall_nr(nr, *args):
    ctypes.set_errno(0)
    rc = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    return ["err", ctypes.get_errno()] if rc == -1 else ["ok", rc]


@needs_x86_64
@pytest.mark.parametrize("variant", ["no-architectures", "default-enosys", "default-allow"])
def test_no_enosys_stub_like_runc(variant):
    cfg = json.loads(json.dumps(PATCHED))
    if variant == "no-architectures":
        del cfg["architectures"]
        expect = errno.EPERM  # default action applies to unknown syscalls
    elif variant == "default-enosys":
        cfg["defaultErrnoRet"] = errno.ENOSYS
        expect = errno.ENOSYS
    else:
        cfg = allow(architectures=X86_ARCHS, syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}])
        expect = errno.ENOSYS  # the kernel's own answer for nr 1000
    with seccomp.compile(cfg) as f:
        assert f.enosys is None
    res = ok_exit(*run_child(cfg, lambda: [raw_syscall_nr(1000), raw_syscall("getrandom", 0, 0, 0)]))
    assert res[0] == ["err", expect]
    if variant == "no-architectures":
        assert res[1] == ["err", errno.EPERM]


@needs_x86_64
def test_enosys_stub_runs_before_kill_default():
    cfg = json.loads(json.dumps(PATCHED))
    cfg["defaultAction"] = "SCMP_ACT_KILL_PROCESS"
    status, res = run_child(cfg, lambda: raw_syscall_nr(1000))
    assert ok_exit(status, res) == ["err", errno.ENOSYS]
    del cfg["architectures"]  # no stub: the default action kills
    status, res = run_child(cfg, lambda: raw_syscall_nr(1000))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


@needs_x86_64
@pytest.mark.parametrize("with_tsync", [True, False])
def test_tsync_on_patched_path(with_tsync):
    cfg = json.loads(json.dumps(PATCHED))
    cfg["syscalls"][0]["names"] += ["getcwd", "clone", "clone3", "set_robust_list", "rseq",
                                    "sched_yield", "gettid", "getrandom"]
    cfg["syscalls"].append({"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EIO})
    if with_tsync:
        cfg["flags"] = ["SECCOMP_FILTER_FLAG_TSYNC"]
    go = threading.Event()
    out = []
    holder = {}

    def worker():
        go.wait()
        out.append(attempt(os.uname))

    def pre():
        holder["t"] = threading.Thread(target=worker)
        holder["t"].start()

    def body():
        go.set()
        holder["t"].join()
        return [out[0], attempt(os.uname)]

    res = ok_exit(*run_child(cfg, body, pre=pre))
    assert res[1] == ["err", errno.EIO]
    assert (res[0] == ["err", errno.EIO]) if with_tsync else (res[0][0] == "ok")
