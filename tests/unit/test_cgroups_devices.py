"""Unit tests: device rules, the v1 emulator/transition and the eBPF
device-filter program generator (no root, nothing loaded)."""
import struct

import pytest

from runtime.cgroups import devicefilter as df
from runtime.cgroups import ebpf
from runtime.cgroups.common import CgroupError
from runtime.cgroups.devices import (WILDCARD, Emulator, Rule, rule_from_oci, rules_from_oci, v1_writes,
                                     with_runc_defaults)


def test_rule_from_oci_defaults_and_strings():
    r = rule_from_oci({"allow": False, "access": "rwm"})
    assert r == Rule("a", WILDCARD, WILDCARD, "rwm", False)
    assert r.cgroup_string() == "a *:* rwm"
    r = rule_from_oci({"allow": True, "type": "c", "major": 1, "minor": 3, "access": "mwr"})
    assert r.cgroup_string() == "c 1:3 rwm"
    assert rule_from_oci({"allow": True, "type": "b", "major": 8, "access": "r"}).cgroup_string() == "b 8:* r"


@pytest.mark.parametrize("access,perms", [
    ("rwa", "rw"), ("wr", "rw"), ("mr", "rm"), ("rrw", "rw"), ("m", "m"), ("w", "w"), ("rwmx", "rwm"),
])
def test_rule_access_is_taken_as_runc_takes_it(access, perms):
    # runc 1.1: the set of r, w and m in the string, other letters ignored.
    r = rule_from_oci({"allow": True, "type": "c", "major": 10, "minor": 229, "access": access})
    assert r.access == perms and r.cgroup_string() == f"c 10:229 {perms}"


def test_rule_access_reaches_the_v2_program_as_runc_s_letters():
    # "rwa" grants what "rw" grants in the eBPF program too.
    rwa = df.device_filter([{"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rwa"}])
    rw = df.device_filter([{"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rw"}])
    assert rw != df.device_filter([{"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rwm"}])
    assert rwa == rw


@pytest.mark.parametrize("access", ["rwa", "wr", "mr", "m"])
def test_config_schema_takes_the_access_strings_runc_takes(access):
    from runtime.specgen import default_spec
    from runtime.validate import validate_config
    cfg = default_spec()
    cfg["linux"]["resources"]["devices"].append({"allow": True, "type": "c", "major": 10, "minor": 229,
                                                 "access": access})
    validate_config(cfg)


@pytest.mark.parametrize("bad,msg", [
    ({"allow": True, "type": "c", "access": ""}, "access cannot be empty"),
    ({"allow": True, "type": "c", "access": "x"}, r"invalid access 'x' \(none of r, w and m\)"),
    ({"allow": True, "type": "u", "access": "r"}, "invalid cgroup device type"),
])
def test_rule_from_oci_errors(bad, msg):
    with pytest.raises(CgroupError, match=msg):
        rule_from_oci(bad, 3)


def test_v1_writes_from_fresh_cgroup_start_with_deny_all():
    # A fresh v1 cgroup shows "a *:* rwm" (allow all): the first write
    # must be the deny-all reset, then the allow rules in the listed order
    # (the kernel keeps that order in devices.list).
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
    assert v1_writes("a *:* rwm\n", rules) == [
        ("devices.deny", "a *:* rwm"),
        ("devices.allow", "c 1:5 rwm"),
        ("devices.allow", "c 1:3 rw"),
    ]


def test_v1_writes_later_rules_override_earlier():
    rules = [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
             {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]
    assert v1_writes("a *:* rwm\n", rules) == [("devices.deny", "a *:* rwm"), ("devices.allow", "c 1:3 rm")]


def test_v1_writes_minimal_transition_from_allow_list():
    # Already an allow-list with 1:3 rwm and 1:5 rwm; target drops 1:5 and
    # narrows 1:3: no disruptive deny-all is needed.
    cur = "c 1:3 rwm\nc 1:5 rwm\n"
    rules = [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}]
    assert v1_writes(cur, rules) == [("devices.deny", "c 1:3 wm"), ("devices.deny", "c 1:5 rwm")]
    assert v1_writes(cur, [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                           {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]) == []


def test_allow_all_mode():
    rules = [{"allow": True, "access": "rwm"}, {"allow": False, "type": "b", "major": 8, "minor": 0, "access": "w"}]
    e = Emulator.from_rules(rules_from_oci(rules))
    assert e.default_allow is True and e.rules == {("b", 8, 0): "w"}
    assert v1_writes("a *:* rwm\n", rules) == [("devices.allow", "a *:* rwm"), ("devices.deny", "b 8:0 w")]


def test_cannot_punch_hole_in_wildcard():
    rules = [{"allow": True, "type": "c", "access": "rwm"},
             {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "r"}]
    with pytest.raises(CgroupError, match="cannot punch a hole"):
        Emulator.from_rules(rules_from_oci(rules))


def test_emulator_from_list():
    e = Emulator.from_list("c 1:3 rwm\nb *:* m\nc 136:* rw\n")
    assert not e.default_allow
    assert e.rules == {("c", 1, 3): "rwm", ("b", WILDCARD, WILDCARD): "m", ("c", 136, WILDCARD): "rw"}
    assert Emulator.from_list("a *:* rwm\n").default_allow
    with pytest.raises(CgroupError, match="malformed"):
        Emulator.from_list("c 1:3\n")


def test_runc_defaults_appended_after_user_rules():
    out = with_runc_defaults([{"allow": False, "access": "rwm"}])
    assert out[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in out
    assert len(out) == 12


# ----------------------------------------------------------------- eBPF

def _decode(code):
    return [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]


def test_insn_encoding():
    assert df.insn(df.LDX_MEM_W, 2, 1, 4, 0) == bytes([0x61, 0x12, 4, 0, 0, 0, 0, 0])
    assert df.insn(df.JMP_EXIT) == bytes([0x95, 0, 0, 0, 0, 0, 0, 0])
    assert df.insn(df.JMP_JNE_K, 4, 0, 3, 136)[4:] == struct.pack("<i", 136)


def test_program_deny_all_is_prologue_plus_return_zero():
    code = df.device_filter([{"allow": False, "access": "rwm"}])
    insns = _decode(code)
    assert len(insns) == 8  # 6 prologue + mov r0,0 + exit
    assert insns[-2] == (df.ALU_MOV_K, 0, 0, 0) and insns[-1][0] == df.JMP_EXIT
    assert df.device_filter([]) == code  # empty list = deny-all too


def test_program_single_allow_rule_shape():
    code = df.device_filter([{"allow": False, "access": "rwm"},
                             {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}])
    insns = _decode(code)
    # prologue 6 + (type, major, minor, mov, exit) 5 + epilogue 2
    assert len(insns) == 13
    jne_type, jne_major, jne_minor, mov, ex = insns[6:11]
    assert jne_type == (df.JMP_JNE_K, 0x02, 4, ebpf.BPF_DEVCG_DEV_CHAR)   # r2 != char -> skip 4
    assert jne_major == (df.JMP_JNE_K, 0x04, 3, 1)
    assert jne_minor == (df.JMP_JNE_K, 0x05, 2, 5)
    assert mov == (df.ALU_MOV_K, 0, 0, 1) and ex[0] == df.JMP_EXIT
    assert insns[11] == (df.ALU_MOV_K, 0, 0, 0)  # default deny


def test_program_partial_access_and_wildcards():
    code = df.device_filter([{"allow": True, "type": "b", "access": "r"}])
    insns = _decode(code)
    # type check + 3-insn access check, no major/minor checks, mov+exit
    block = insns[6:-2]
    assert len(block) == 6
    assert block[0] == (df.JMP_JNE_K, 0x02, 5, ebpf.BPF_DEVCG_DEV_BLOCK)
    assert block[1] == (df.ALU_MOV_X, 0x31, 0, 0)          # r1 = r3
    assert block[2] == (df.ALU_AND_K, 0x01, 0, ebpf.BPF_DEVCG_ACC_READ)
    assert block[3] == (df.JMP_JNE_X, 0x31, 2, 0)          # if r1 != r3 skip 2


def test_program_block_count_runc_defaults():
    rules = with_runc_defaults([{"allow": False, "access": "rwm"}])
    insns, default_allow = df.program_for_rules(rules_from_oci(rules))
    assert default_allow is False
    n_exits = sum(1 for i in insns if i[0] == df.JMP_EXIT)
    # one exit per clean rule (11 distinct device entries) + the default
    assert n_exits == 12
    # every jump lands inside the program
    for pos, (code, _d, _s, off, _imm) in enumerate(insns):
        if code in (df.JMP_JNE_K, df.JMP_JNE_X, df.JMP_JEQ_K):
            assert 0 < pos + 1 + off < len(insns)


def test_program_blacklist_mode_defaults_to_allow():
    insns, default_allow = df.program_for_rules(rules_from_oci(
        [{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]))
    assert default_allow is True
    assert insns[-2] == (df.ALU_MOV_K, 0, 0, 0, 1)
    # the one block returns 0 (deny)
    assert (df.ALU_MOV_K, 0, 0, 0, 0) in insns


def test_program_deny_block_matches_any_denied_bit():
    # deny-list with "c 1:3 w" denied: an open asking for r and w must hit
    # the deny block, so it tests for overlap (r1 & w != 0), not inclusion.
    code = df.device_filter([{"allow": True, "access": "rwm"},
                             {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}])
    block = _decode(code)[6:-2]
    assert block[1] == (df.ALU_MOV_X, 0x31, 0, 0)
    assert block[2] == (df.ALU_AND_K, 0x01, 0, ebpf.BPF_DEVCG_ACC_WRITE)
    assert block[3] == (df.JMP_JEQ_K, 0x01, 4, 0)          # if r1 == 0 skip 4
    assert block[-2] == (df.ALU_MOV_K, 0, 0, 0)             # deny


def test_program_later_rule_overrides_earlier():
    # allow 1:3 then deny it again: nothing is left to allow.
    same = df.device_filter([])
    code = df.device_filter([{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                             {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}])
    assert code == same


def test_disassemble_lists_every_insn():
    code = df.device_filter([{"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}])
    lines = df.disassemble(code)
    assert len(lines) == len(code) // 8 and lines[-1].startswith("exit")
