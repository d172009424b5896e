"""Generate a BPF_PROG_TYPE_CGROUP_DEVICE program from device rules.

Shape (that of runc's and crun's device filters, written from the kernel
ABI; a deny block matches any of its access bits, as in the v1 controller,
where theirs needs all of them):

    prologue (6 insns): R2 = type, R3 = access, R4 = major, R5 = minor
    one block per rule of the emulator's *clean* rule list:
        if R2 != type        goto next
        [R1 = R3; R1 &= acc; if R1 != R3 goto next]   allow, unless acc == rwm
        [R1 = R3; R1 &= acc; if R1 == 0 goto next]    deny, unless acc == rwm
        [if R4 != major      goto next]               unless major == *
        [if R5 != minor      goto next]               unless minor == *
        R0 = allow; exit
    epilogue: R0 = default; exit

The rule list is first reduced with devices.Emulator (later rules override
earlier ones, exactly as the v1 controller would end up), so the first
matching block decides and the blocks never contradict each other.
"""

import struct

from .common import CgroupError
from .devices import WILDCARD, Emulator, Rule, rules_from_oci
from . import ebpf as _b

# opcodes
LDX_MEM_W = 0x61      # BPF_LDX | BPF_MEM | BPF_W
ALU_AND_K = 0x54      # BPF_ALU | BPF_AND | BPF_K (32 bit)
ALU_RSH_K = 0x74      # BPF_ALU | BPF_RSH | BPF_K
ALU_MOV_K = 0xB4      # BPF_ALU | BPF_MOV | BPF_K
ALU_MOV_X = 0xBC      # BPF_ALU | BPF_MOV | BPF_X
JMP_JNE_K = 0x55      # BPF_JMP | BPF_JNE | BPF_K
JMP_JNE_X = 0x5D      # BPF_JMP | BPF_JNE | BPF_X
JMP_JEQ_K = 0x15      # BPF_JMP | BPF_JEQ | BPF_K
JMP_EXIT = 0x95       # BPF_JMP | BPF_EXIT

LICENSE = "Apache"


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """Encode one struct bpf_insn (little-endian, dst in the low nibble)."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _prologue() -> list[tuple]:
    return [
        (LDX_MEM_W, 2, 1, 0, 0),        # R2 = *(u32 *)(R1 + 0)  access_type
        (ALU_AND_K, 2, 0, 0, 0xFFFF),   # R2 &= 0xffff           -> device type
        (LDX_MEM_W, 3, 1, 0, 0),        # R3 = access_type
        (ALU_RSH_K, 3, 0, 0, 16),       # R3 >>= 16              -> access bits
        (LDX_MEM_W, 4, 1, 4, 0),        # R4 = major
        (LDX_MEM_W, 5, 1, 8, 0),        # R5 = minor
    ]


def _block(rule: Rule) -> list[tuple]:
    """Instructions of one rule; jump offsets hold the sentinel 'NEXT'."""
    if rule.type == "c":
        t = _b.BPF_DEVCG_DEV_CHAR
    elif rule.type == "b":
        t = _b.BPF_DEVCG_DEV_BLOCK
    else:
        raise CgroupError(f"device rule {rule.cgroup_string()!r}: type must be b or c in a program block")
    for name, v in (("major", rule.major), ("minor", rule.minor)):
        if v != WILDCARD and not 0 <= v <= 0xFFFFFFFF:
            raise CgroupError(f"device rule {rule.cgroup_string()!r}: invalid {name} {v}")
    acc = 0
    for c in rule.access:
        acc |= {"r": _b.BPF_DEVCG_ACC_READ, "w": _b.BPF_DEVCG_ACC_WRITE,
                "m": _b.BPF_DEVCG_ACC_MKNOD}[c]
    out = [(JMP_JNE_K, 2, 0, "NEXT", t)]
    if acc != (_b.BPF_DEVCG_ACC_READ | _b.BPF_DEVCG_ACC_WRITE | _b.BPF_DEVCG_ACC_MKNOD):
        # The kernel asks once for all the access an open wants (r and w
        # for O_RDWR). As in the v1 controller, an allow rule must cover
        # every requested bit, and a deny rule denies any of its bits.
        out += [(ALU_MOV_X, 1, 3, 0, 0), (ALU_AND_K, 1, 0, 0, acc)]
        out.append((JMP_JNE_X, 1, 3, "NEXT", 0) if rule.allow else (JMP_JEQ_K, 1, 0, "NEXT", 0))
    if rule.major != WILDCARD:
        out.append((JMP_JNE_K, 4, 0, "NEXT", _s32(rule.major)))
    if rule.minor != WILDCARD:
        out.append((JMP_JNE_K, 5, 0, "NEXT", _s32(rule.minor)))
    out += [(ALU_MOV_K, 0, 0, 0, 1 if rule.allow else 0), (JMP_EXIT, 0, 0, 0, 0)]
    return out


def _s32(v: int) -> int:
    # imm is signed 32 bit; majors/minors above 2**31 wrap, as the kernel
    # compares the 64-bit sign-extended register with the zero-extended u32
    # value only for values < 2**31 (no real device uses larger numbers).
    return v - (1 << 32) if v >= (1 << 31) else v


def program_for_rules(rules: list[Rule]) -> tuple[list[tuple], bool]:
    """(symbolic instruction list, default_allow) for already-parsed rules
    replayed in order on a deny-all cgroup."""
    emu = Emulator.from_rules(rules)
    clean = emu.clean_rules()
    insns = _prologue()
    for idx, r in enumerate(clean):
        if r.type == "a":
            # Only possible as the leading mode switch; it is the default.
            if idx != 0 or r.allow != emu.default_allow:
                raise CgroupError(f"internal error: stray wildcard rule at {idx} ({r.cgroup_string()})")
            continue
        if r.allow == emu.default_allow:
            raise CgroupError(f"internal error: no-op rule at {idx} ({r.cgroup_string()})")
        block = _block(r)
        # Resolve 'goto next block' to a relative offset: from the insn after
        # the jump to the first insn after this block.
        n = len(block)
        resolved = []
        for i, (code, dst, src, off, imm) in enumerate(block):
            if off == "NEXT":
                off = n - (i + 1)
            resolved.append((code, dst, src, off, imm))
        insns += resolved
    insns += [(ALU_MOV_K, 0, 0, 0, 1 if emu.default_allow else 0), (JMP_EXIT, 0, 0, 0, 0)]
    return insns, emu.default_allow


def device_filter(oci_rules) -> bytes:
    """Encoded program for an OCI linux.resources.devices list (in order,
    starting from deny-all). Returns raw bytes for ebpf.prog_load."""
    insns, _ = program_for_rules(rules_from_oci(oci_rules))
    return b"".join(insn(*i) for i in insns)


def disassemble(code: bytes) -> list[str]:
    """Human-readable listing (tests and debugging)."""
    names = {LDX_MEM_W: "ldxw", ALU_AND_K: "and32", ALU_RSH_K: "rsh32", ALU_MOV_K: "mov32",
             ALU_MOV_X: "mov32x", JMP_JNE_K: "jne", JMP_JNE_X: "jnex", JMP_JEQ_K: "jeq", JMP_EXIT: "exit"}
    out = []
    for i in range(0, len(code), 8):
        c, regs, off, imm = struct.unpack_from("<BBhi", code, i)
        out.append(f"{names.get(c, hex(c))} r{regs & 15} r{regs >> 4} {off} {imm}")
    return out
