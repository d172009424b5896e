"""Unit tests for runtime.seccomp / runtime.libseccomp that need no loaded
filter: validation, bindings, features(). Kernel behaviour is tested in
tests/integration/test_seccomp_kernel.py."""

import errno
import os
import subprocess
import sys

import pytest

from runtime import libseccomp as L
from runtime import seccomp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cfg(**kw):
    base = {"defaultAction": "SCMP_ACT_ALLOW"}
    base.update(kw)
    return base


# ------------------------------------------------------------------ bindings

def test_import_is_cheap():
    # Neither ctypes nor libseccomp may be loaded just by importing.
    code = ("import sys, runtime.seccomp, runtime.libseccomp as L; "
            "print('ctypes' in sys.modules, L._lib is None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_version_and_api():
    major, minor, micro = L.version()
    assert (major, minor) >= (2, 5)
    assert L.api_get() >= 1


def test_resolve_names():
    assert L.syscall_resolve_name("getcwd") >= 0
    assert L.syscall_resolve_name("no_such_syscall_xyz") == L.NR_SCMP_ERROR
    assert L.arch_resolve_name("x86_64") == 0xC000003E
    assert L.arch_resolve_name("not-an-arch") == 0


def test_errors_carry_errno():
    ctx = L.init(L.ACT_ALLOW)
    try:
        native = L.arch_native()
        assert L.arch_exist(ctx, native)
        with pytest.raises(OSError) as ei:
            L.arch_add(ctx, native)  # already there
        assert ei.value.errno == errno.EEXIST
        assert "seccomp_arch_add" in str(ei.value)
        with pytest.raises(OSError) as ei:
            L.attr_set(ctx, 9999, 1)
        assert ei.value.errno == errno.EINVAL
        # two conditions on one arg in one rule: libseccomp refuses
        nr = L.syscall_resolve_name("getppid")
        with pytest.raises(OSError) as ei:
            L.rule_add_array(ctx, L.ACT_ERRNO(1), nr,
                             [(0, L.CMP_EQ, 1, 0), (0, L.CMP_EQ, 2, 0)])
        assert ei.value.errno == errno.EINVAL
        # the same action as the default: refused too
        with pytest.raises(OSError):
            L.rule_add_array(ctx, L.ACT_ALLOW, nr)
        assert L.attr_get(ctx, L.FLTATR_CTL_NNP) == 1  # libseccomp's default
    finally:
        L.release(ctx)


def test_init_bad_action():
    with pytest.raises(OSError):
        L.init(0x12345678)


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("bad, field", [
    ({}, "linux.seccomp.defaultAction: required"),
    (cfg(defaultAction="SCMP_ACT_FOO"), 'linux.seccomp.defaultAction: unknown action "SCMP_ACT_FOO"'),
    (cfg(defaultAction="SCMP_ACT_NOTIFY"), "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot"),
    (cfg(defaultErrnoRet=5), "linux.seccomp.defaultErrnoRet: only valid with SCMP_ACT_ERRNO"),
    (cfg(defaultAction="SCMP_ACT_ERRNO", defaultErrnoRet=-1), "linux.seccomp.defaultErrnoRet: must be"),
    (cfg(defaultAction="SCMP_ACT_ERRNO", defaultErrnoRet=True), "linux.seccomp.defaultErrnoRet: must be"),
    (cfg(architectures=["SCMP_ARCH_X86", "SCMP_ARCH_VAX"]),
     'linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_VAX"'),
    (cfg(architectures="SCMP_ARCH_X86"), "linux.seccomp.architectures: must be an array"),
    (cfg(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_BOGUS"]),
     'linux.seccomp.flags[1]: unknown flag "SECCOMP_FILTER_FLAG_BOGUS"'),
    (cfg(listenerMetadata="x"), "linux.seccomp.listenerMetadata: must not be set without listenerPath"),
    (cfg(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}, {"names": [], "action": "SCMP_ACT_ERRNO"}]),
     "linux.seccomp.syscalls[1].names: must be a non-empty array"),
    (cfg(syscalls=[{"names": ["getcwd", ""], "action": "SCMP_ACT_ERRNO"}]),
     "linux.seccomp.syscalls[0].names[1]: must be a non-empty string"),
    (cfg(syscalls=[{"names": ["getcwd"]}]), "linux.seccomp.syscalls[0].action: required"),
    (cfg(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_BLAH"}]),
     'linux.seccomp.syscalls[0].action: unknown action "SCMP_ACT_BLAH"'),
    (cfg(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]),
     'linux.seccomp.syscalls[0].errnoRet: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not "SCMP_ACT_KILL"'),
    (cfg(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]),
     "linux.seccomp.syscalls[0].errnoRet: must be an integer in 0..65535"),
    (cfg(syscalls=[{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]),
     "linux.seccomp.syscalls[0].names: SCMP_ACT_NOTIFY cannot be used for the write syscall"),
    (cfg(syscalls=[{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                             {"index": 1, "value": 1, "op": "SCMP_CMP_FOO"}]}]),
     'linux.seccomp.syscalls[0].args[1].op: unknown operator "SCMP_CMP_FOO"'),
    (cfg(syscalls=[{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]),
     "linux.seccomp.syscalls[0].args[0].index: must be an integer in 0..5"),
    (cfg(syscalls=[{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "op": "SCMP_CMP_EQ"}]}]),
     "linux.seccomp.syscalls[0].args[0].value: required"),
    (cfg(syscalls=[{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}]}]),
     "linux.seccomp.syscalls[0].args[0].value: must be an integer in 0..18446744073709551615"),
    (cfg(syscalls=[{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1}]}]),
     "linux.seccomp.syscalls[0].args[0].op: required"),
    (cfg(syscalls="getcwd"), "linux.seccomp.syscalls: must be an array"),
    ("SCMP_ACT_ALLOW", "linux.seccomp: must be an object"),
])
def test_invalid_config_names_field(bad, field):
    with pytest.raises(ValueError) as ei:
        seccomp.compile(bad)
    msg = str(ei.value)
    assert msg.startswith(field), msg
    assert "\n" not in msg


def test_wait_killable_recv_needs_libseccomp_2_6():
    c = cfg(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
    if "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" in seccomp.features()["supportedFlags"]:
        seccomp.compile(c).close()
    else:
        with pytest.raises(ValueError) as ei:
            seccomp.compile(c)
        assert str(ei.value).startswith(
            'linux.seccomp.flags[0]: "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" is not supported by libseccomp')


def test_flags_accepted():
    f = seccomp.compile(cfg(flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]))
    try:
        assert L.attr_get(f.ctx, L.FLTATR_CTL_TSYNC) == 1
        assert L.attr_get(f.ctx, L.FLTATR_CTL_LOG) == 1
        assert L.attr_get(f.ctx, L.FLTATR_CTL_SSB) == 1
        assert L.attr_get(f.ctx, L.FLTATR_CTL_NNP) == 0  # we never force NNP
    finally:
        f.close()


def test_unknown_syscalls_skipped_and_rules_counted():
    f = seccomp.compile(cfg(syscalls=[
        {"names": ["getcwd", "definitely_not_a_syscall", "mkdir"], "action": "SCMP_ACT_ERRNO"},
    ]))
    with f:
        assert f.skipped == ["definitely_not_a_syscall"]
        assert f.rules == 2
        assert not f.uses_notify


def test_rule_equal_to_default_is_skipped():
    # default ERRNO(EPERM); a rule ERRNO without errnoRet is the same action
    f = seccomp.compile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
    ]})
    with f:
        assert f.rules == 1
    # with defaultErrnoRet the default is ERRNO(38): now the EPERM rules count
    f = seccomp.compile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
    ]})
    with f:
        assert f.rules == 1


def test_same_index_args_split_like_runc():
    two_on_same = [{"index": 0, "value": 5, "op": "SCMP_CMP_NE"},
                   {"index": 0, "value": 100, "op": "SCMP_CMP_GE"}]
    with seccomp.compile(cfg(syscalls=[{"names": ["getppid"], "action": "SCMP_ACT_ERRNO",
                                        "args": two_on_same}])) as f:
        assert f.rules == 2
    distinct = [{"index": 0, "value": 5, "op": "SCMP_CMP_NE"},
                {"index": 1, "value": 100, "op": "SCMP_CMP_GE"}]
    with seccomp.compile(cfg(syscalls=[{"names": ["getppid"], "action": "SCMP_ACT_ERRNO",
                                        "args": distinct}])) as f:
        assert f.rules == 1


def test_architectures_added():
    native = cfg(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}])
    multi = dict(native, architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    with seccomp.compile(native) as a, seccomp.compile(multi) as b:
        for name in ("x86", "x32"):
            tok = L.arch_resolve_name(name)
            assert not L.arch_exist(a.ctx, tok)
            assert L.arch_exist(b.ctx, tok)
        # each extra arch adds its own section to the program
        assert len(b.export_bpf()) > len(a.export_bpf())


def test_filter_close_idempotent():
    f = seccomp.compile(cfg())
    f.close()
    f.close()
    with pytest.raises(ValueError):
        seccomp.load(f)


def test_uses_notify():
    assert not seccomp.uses_notify(None)
    assert not seccomp.uses_notify(cfg())
    assert not seccomp.uses_notify(cfg(syscalls=[{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}]))
    assert seccomp.uses_notify(cfg(syscalls=[{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]))
    # only unknown names: the rule is skipped, so no listener will exist
    assert not seccomp.uses_notify(cfg(syscalls=[{"names": ["nope_nope"], "action": "SCMP_ACT_NOTIFY"}]))
    with seccomp.compile(cfg(syscalls=[{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}])) as f:
        assert f.uses_notify


def test_features_shape_and_truth():
    feat = seccomp.features()
    assert feat["enabled"] is True
    assert set(feat["operators"]) == {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
                                      "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"}
    assert {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_TRAP",
            "SCMP_ACT_TRACE"} <= set(feat["actions"])
    assert "SCMP_ARCH_X86_64" in feat["archs"]
    assert set(feat["supportedFlags"]) <= set(feat["knownFlags"])
    assert feat["knownFlags"] == sorted(["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                         "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                         "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
    # everything advertised compiles; known-but-unsupported flags do not
    for a in feat["actions"]:
        kw = {"errnoRet": 3} if a in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE") else {}
        seccomp.compile(cfg(syscalls=[{"names": ["getppid"], "action": a, **kw}])).close()
    for arch in feat["archs"]:
        seccomp.compile(cfg(architectures=[arch],
                            syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}])).close()
    for fl in feat["knownFlags"]:
        if fl in feat["supportedFlags"]:
            seccomp.compile(cfg(flags=[fl])).close()
        else:
            with pytest.raises(ValueError, match=fl):
                seccomp.compile(cfg(flags=[fl]))


def test_features_archs_match_libseccomp():
    feat = seccomp.features()
    native = L.arch_native()
    for oci, name in seccomp._ARCHS.items():
        tok = L.arch_resolve_name(name)
        if oci in feat["archs"]:
            assert tok
            continue
        with pytest.raises(ValueError) as ei:
            seccomp.compile(cfg(architectures=[oci]))
        if not tok:  # unknown to this libseccomp
            assert str(ei.value).startswith(
                f'linux.seccomp.architectures[0]: "{oci}" is not supported by libseccomp')
        else:  # known, but not combinable with the native arch (endianness)
            assert tok != native
            assert str(ei.value).startswith(
                f'linux.seccomp.architectures[0]: cannot add "{oci}" to a filter for this machine')
    # on x86_64 the big-endian MIPS is known to libseccomp yet refused
    if native == L.arch_resolve_name("x86_64"):
        assert "SCMP_ARCH_MIPS" not in feat["archs"]
        assert {"SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_X86_64"} <= set(feat["archs"])


def test_resolve_num_arch():
    nr = L.syscall_resolve_name("getcwd")
    assert L.syscall_resolve_num_arch(0, nr) == "getcwd"
    assert L.syscall_resolve_num_arch(0, 99999) is None


X86 = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


@pytest.mark.parametrize("default, extra, stub", [
    ("SCMP_ACT_ERRNO", {}, True),
    ("SCMP_ACT_KILL_PROCESS", {}, True),
    ("SCMP_ACT_TRAP", {}, True),
    ("SCMP_ACT_ERRNO", {"defaultErrnoRet": errno.ENOSYS}, False),
    ("SCMP_ACT_ERRNO", {"defaultErrnoRet": errno.EACCES}, True),
    ("SCMP_ACT_ALLOW", {}, False),
    ("SCMP_ACT_LOG", {}, False),
    ("SCMP_ACT_TRACE", {}, False),
    ("SCMP_ACT_ERRNO", {"architectures": None}, False),   # runc: only listed archs
])
def test_enosys_stub_conditions(default, extra, stub):
    c = {"defaultAction": default, "architectures": X86,
         "syscalls": [{"names": ["getcwd", "exit_group"], "action": "SCMP_ACT_KILL_THREAD"}]}
    c.update(extra)
    if c.get("architectures") is None:
        c.pop("architectures")
    with seccomp.compile(c) as f:
        assert bool(f.enosys) == stub
        prog = f.program()
        base = f.export_bpf()
        assert prog.endswith(base)
        assert (len(prog) > len(base)) == stub


def test_enosys_plan_maxima():
    names = ["getcwd", "exit_group", "no_such_call"]
    c = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": X86 + ["SCMP_ARCH_X86_64"],
         "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}
    with seccomp.compile(c) as f:
        plan = f.enosys
    x86_64, x86, x32 = (L.arch_resolve_name(n) for n in ("x86_64", "x86", "x32"))
    # x32 shares AUDIT_ARCH_X86_64 with x86_64
    assert set(plan) == {x86_64, x86}
    assert set(plan[x86_64]) == {x86_64, x32}
    assert plan[x86_64][x86_64] == max(L.syscall_resolve_name_arch(x86_64, n) for n in names)
    assert plan[x86_64][x32] == max(L.syscall_resolve_name_arch(x32, n) for n in names)
    assert plan[x86_64][x32] & 0x40000000  # x32 numbers carry the x32 bit
    assert plan[x86][x86] == max(L.syscall_resolve_name_arch(x86, n) for n in names)
