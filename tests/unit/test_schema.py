"""specs/*.json, the generated validator and runtime.validate.

Three validators must tell the same story about every document in the
corpus below:
  * runtime.validate (the generated, jsonschema-free code used by `create`),
  * jsonschema running our own specs/*.json,
  * the official (older, draft-04) runtime-spec schemas from the Debian
    package, on the part of each document those schemas know about --
    except for the documented, deliberate divergences in OFFICIAL_DIFFERS.
"""
import copy
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import jsonschema
import pytest
import referencing
import referencing.jsonschema

from runtime import _config_validator
from runtime.validate import SchemaError, validate_config, validate_features, validate_state

REPO = pathlib.Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"
OFFICIAL_DIR = pathlib.Path("/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema")


def _load(name):
    return json.loads((SPECS / name).read_text())


CONFIG_SCHEMA = _load("config-schema.json")
STATE_SCHEMA = _load("state-schema.json")
FEATURES_SCHEMA = _load("features-schema.json")


# Our one deliberate refinement of JSON Schema semantics: "integer" means an
# integer literal in the JSON text (Python int after json.loads), not any
# number with a zero fraction.  Go's encoding/json -- hence runc -- refuses
# 1000.0 for a uid, and the runtime should not have to int() every field.
_RefValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, v: type(v) is int),
)


def _ref_validator(schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    return _RefValidator(schema)


REF_CONFIG = _ref_validator(CONFIG_SCHEMA)
REF_STATE = _ref_validator(STATE_SCHEMA)
REF_FEATURES = _ref_validator(FEATURES_SCHEMA)


# --------------------------------------------------------------------------
# Corpus: good documents
# --------------------------------------------------------------------------

MINIMAL = {"ociVersion": "1.3.0", "root": {"path": "rootfs"}}

FULL = {
    "ociVersion": "1.3.0",
    "root": {"path": "rootfs", "readonly": True},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/data", "type": "none", "source": "/volumes/data",
         "options": ["rbind", "rw", "idmap"],
         "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
         "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]},
    ],
    "process": {
        "terminal": True,
        "consoleSize": {"height": 25, "width": 80},
        "user": {"uid": 1, "gid": 1, "umask": 63, "additionalGids": [5, 6]},
        "args": ["sh", "-c", "echo hi"],
        "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
        "cwd": "/root",
        "capabilities": {
            "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_AUDIT_WRITE", "CAP_KILL"],
            "inheritable": ["CAP_AUDIT_WRITE"],
            "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
        },
        "rlimits": [
            {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
            {"type": "RLIMIT_CORE", "hard": 18446744073709551615, "soft": 0},
        ],
        "apparmorProfile": "acme_secure_profile",
        "oomScoreAdj": 100,
        "selinuxLabel": "system_u:system_r:svirt_lxc_net_t:s0:c124,c675",
        "noNewPrivileges": True,
        "scheduler": {"policy": "SCHED_DEADLINE", "nice": -5, "priority": 0,
                      "flags": ["SCHED_FLAG_RESET_ON_FORK"],
                      "runtime": 1000000, "deadline": 2000000, "period": 3000000},
        "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 4},
        "execCPUAffinity": {"initial": "7", "final": "0-3,7"},
    },
    "hostname": "slartibartfast",
    "domainname": "example.test",
    "hooks": {
        "prestart": [{"path": "/usr/bin/fix-mounts", "args": ["fix-mounts", "a"], "env": ["k=v"]}],
        "createRuntime": [{"path": "/usr/bin/setup-network"}],
        "createContainer": [{"path": "/usr/bin/mount-hook", "args": ["-mount"]}],
        "startContainer": [{"path": "/usr/bin/refresh-ldcache"}],
        "poststart": [{"path": "/usr/bin/notify-start", "timeout": 5}],
        "poststop": [{"path": "/usr/sbin/cleanup.sh", "args": ["cleanup.sh", "-f"]}],
    },
    "annotations": {"com.example.key1": "value1", "com.example.empty": ""},
    "linux": {
        "namespaces": [
            {"type": "pid"}, {"type": "network", "path": "/var/run/netns/neta"},
            {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "user"},
            {"type": "cgroup"},
        ],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 32000}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 32000}],
        "timeOffsets": {"monotonic": {"secs": 172800, "nanosecs": 0},
                        "boottime": {"secs": -600, "nanosecs": 500}},
        "devices": [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
             "fileMode": 438, "uid": 0, "gid": 0},
            {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 432},
            {"path": "/run/fifo", "type": "p"},
        ],
        "netDevices": {"eth1": {"name": "container_eth1"}, "ens4": {}},
        "cgroupsPath": "/myRuntime/myContainer",
        "resources": {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
            ],
            "memory": {"limit": 536870912, "reservation": 536870912, "swap": -1,
                       "kernel": -1, "kernelTCP": -1, "swappiness": 0,
                       "disableOOMKiller": False, "useHierarchy": True,
                       "checkBeforeUpdate": True},
            "cpu": {"shares": 1024, "quota": 1000000, "burst": 100000, "period": 500000,
                    "realtimeRuntime": 950000, "realtimePeriod": 1000000,
                    "cpus": "2-3", "mems": "0-7", "idle": 1},
            "blockIO": {
                "weight": 10, "leafWeight": 10,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 300},
                                 {"major": 8, "minor": 16, "leafWeight": 500}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 700}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 80}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}],
            },
            "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200},
                               {"pageSize": "64KB", "limit": 1000000}],
            "network": {"classID": 1048577,
                        "priorities": [{"name": "eth0", "priority": 500}]},
            "pids": {"limit": 32771},
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000},
                     "mlx4_0": {"hcaObjects": 1000}},
            "unified": {"io.max": "259:0 rbps=2097152 wiops=120", "memory.high": "max"},
        },
        "intelRdt": {"closID": "guaranteed_group", "l3CacheSchema": "L3:0=7f0;1=1f",
                     "memBwSchema": "MB:0=20;1=70",
                     "schemata": ["L2:0=f;1=f", "MB:0=20;1=70"], "enableMonitoring": True},
        "sysctl": {"net.ipv4.ip_forward": "1", "net.core.somaxconn": "256"},
        "seccomp": {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "listenerPath": "/run/seccomp-agent.sock",
            "listenerMetadata": "MKNOD=/dev/null",
            "syscalls": [
                {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 8, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"},
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            ],
        },
        "rootfsPropagation": "slave",
        "maskedPaths": ["/proc/kcore", "/proc/timer_list"],
        "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        "mountLabel": "system_u:object_r:svirt_sandbox_file_t:s0:c715,c811",
        "personality": {"domain": "LINUX32", "flags": []},
        "memoryPolicy": {"mode": "MPOL_INTERLEAVE", "nodes": "2-3",
                         "flags": ["MPOL_F_STATIC_NODES"]},
    },
}


def _with(base, *ops):
    """Deep copy of `base` with ops applied: ("set", path, value) / ("del", path).

    A path is a tuple of dict keys and list indexes.
    """
    doc = copy.deepcopy(base)
    for op in ops:
        kind, path = op[0], op[1]
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if kind == "set":
            parent[path[-1]] = op[2]
        elif kind == "del":
            del parent[path[-1]]
        else:
            raise ValueError(kind)
    return doc


def S(path, value):
    return ("set", tuple(path), value)


def D(path):
    return ("del", tuple(path))


P = ("process",)
L = ("linux",)
R = ("linux", "resources")
SC = ("linux", "seccomp")

GOOD_CONFIGS = {
    "minimal": MINIMAL,
    "full": FULL,
    # Fields from future spec versions / vendors are ignored ("Extensibility").
    "unknown-extension-keys": _with(FULL, S(["org.example.future"], {"x": 1}),
                                    S(P + ("user", "x-extra"), [1, 2]),
                                    S(L + ("resources", "memory", "futureKnob"), "on")),
    "old-intelRdt-monitoring-flags": _with(MINIMAL, S(["linux"], {"intelRdt": {"enableCMT": True, "enableMBM": False}})),
    "rprivate-propagation": _with(MINIMAL, S(["linux"], {"rootfsPropagation": "rprivate"})),
    "semver-build-metadata": _with(MINIMAL, S(["ociVersion"], "1.3.0+dev")),
    "pids-without-limit": _with(MINIMAL, S(["linux"], {"resources": {"pids": {}}})),
    "pipe-device-without-numbers": _with(MINIMAL, S(["linux"], {"devices": [{"type": "p", "path": "/f"}]})),
    "process-without-args": _with(FULL, D(P + ("args",))),
    "uint64-max-rlimit": _with(FULL, S(P + ("rlimits", 0, "hard"), 2**64 - 1)),
    "relative-mount-destination": _with(FULL, S(["mounts", 0, "destination"], "proc")),
    "time-namespace": _with(FULL, S(L + ("namespaces",), [{"type": "time"}, {"type": "user"}])),
    "new-seccomp-arch": _with(FULL, S(SC + ("architectures",), ["SCMP_ARCH_LOONGARCH64"])),
    "big-fileMode": _with(FULL, S(L + ("devices", 0, "fileMode"), 8630)),
}

# --------------------------------------------------------------------------
# Corpus: bad documents -- (config, field named in the SchemaError)
# --------------------------------------------------------------------------

BAD_CONFIGS = {
    # top level
    "not-an-object": ([FULL], "(document)"),
    "missing-ociVersion": (_with(FULL, D(["ociVersion"])), "ociVersion"),
    "ociVersion-not-semver": (_with(FULL, S(["ociVersion"], "1.0")), "ociVersion"),
    "ociVersion-trailing-newline": (_with(FULL, S(["ociVersion"], "1.0.0\n")), "ociVersion"),
    "ociVersion-number": (_with(FULL, S(["ociVersion"], 1)), "ociVersion"),
    "missing-root": (_with(FULL, D(["root"])), "root"),
    "root-missing-path": (_with(FULL, D(["root", "path"])), "root.path"),
    "root-readonly-string": (_with(FULL, S(["root", "readonly"], "true")), "root.readonly"),
    "hostname-number": (_with(FULL, S(["hostname"], 7)), "hostname"),
    "domainname-null": (_with(FULL, S(["domainname"], None)), "domainname"),
    # mounts
    "mounts-not-array": (_with(FULL, S(["mounts"], {"destination": "/x"})), "mounts"),
    "mount-missing-destination": (_with(FULL, D(["mounts", 1, "destination"])), "mounts[1].destination"),
    "mount-options-string": (_with(FULL, S(["mounts", 1, "options"], "ro,nosuid")), "mounts[1].options"),
    "mount-option-number": (_with(FULL, S(["mounts", 1, "options", 2], 755)), "mounts[1].options[2]"),
    "mount-uidmap-without-gidmap": (_with(FULL, D(["mounts", 2, "gidMappings"])), "mounts[2].gidMappings"),
    "mount-idmap-missing-size": (_with(FULL, D(["mounts", 2, "uidMappings", 0, "size"])),
                                 "mounts[2].uidMappings[0].size"),
    "mount-idmap-hostid-too-big": (_with(FULL, S(["mounts", 2, "gidMappings", 0, "hostID"], 2**32)),
                                   "mounts[2].gidMappings[0].hostID"),
    # process
    "process-missing-cwd": (_with(FULL, D(P + ("cwd",))), "process.cwd"),
    "process-relative-cwd": (_with(FULL, S(P + ("cwd",), "root")), "process.cwd"),
    "process-empty-args": (_with(FULL, S(P + ("args",), [])), "process.args"),
    "process-args-not-strings": (_with(FULL, S(P + ("args", 1), 3)), "process.args[1]"),
    "process-env-object": (_with(FULL, S(P + ("env",), {"PATH": "/bin"})), "process.env"),
    "process-terminal-int": (_with(FULL, S(P + ("terminal",), 1)), "process.terminal"),
    "consoleSize-missing-width": (_with(FULL, D(P + ("consoleSize", "width"))), "process.consoleSize.width"),
    "consoleSize-negative": (_with(FULL, S(P + ("consoleSize", "height"), -1)), "process.consoleSize.height"),
    "user-missing-uid": (_with(FULL, D(P + ("user", "uid"))), "process.user.uid"),
    "user-uid-negative": (_with(FULL, S(P + ("user", "uid"), -1)), "process.user.uid"),
    "user-uid-too-big": (_with(FULL, S(P + ("user", "uid"), 4294967296)), "process.user.uid"),
    "user-uid-string": (_with(FULL, S(P + ("user", "uid"), "0")), "process.user.uid"),
    "user-uid-bool": (_with(FULL, S(P + ("user", "uid"), True)), "process.user.uid"),
    "user-uid-fraction": (_with(FULL, S(P + ("user", "uid"), 1.5)), "process.user.uid"),
    # Go's encoding/json (runc) refuses 1000.0 for an integer field, and so do we.
    "user-uid-integral-float": (_with(FULL, S(P + ("user", "uid"), 1000.0)), "process.user.uid"),
    "rlimit-exponent-float": (_with(FULL, S(P + ("rlimits", 0, "soft"), 1e3)), "process.rlimits[0].soft"),
    "user-gid-too-big": (_with(FULL, S(P + ("user", "gid"), 2**40)), "process.user.gid"),
    "user-umask-negative": (_with(FULL, S(P + ("user", "umask"), -18)), "process.user.umask"),
    "user-additionalGids-bad": (_with(FULL, S(P + ("user", "additionalGids", 1), -6)),
                                "process.user.additionalGids[1]"),
    "capabilities-not-list": (_with(FULL, S(P + ("capabilities", "ambient"), "CAP_KILL")),
                              "process.capabilities.ambient"),
    "rlimit-unknown-type": (_with(FULL, S(P + ("rlimits", 0, "type"), "RLIMIT_FOO")), "process.rlimits[0].type"),
    "rlimit-missing-soft": (_with(FULL, D(P + ("rlimits", 1, "soft"))), "process.rlimits[1].soft"),
    "rlimit-hard-too-big": (_with(FULL, S(P + ("rlimits", 0, "hard"), 2**64)), "process.rlimits[0].hard"),
    "oomScoreAdj-out-of-range": (_with(FULL, S(P + ("oomScoreAdj",), 1001)), "process.oomScoreAdj"),
    "noNewPrivileges-string": (_with(FULL, S(P + ("noNewPrivileges",), "yes")), "process.noNewPrivileges"),
    "scheduler-bad-policy": (_with(FULL, S(P + ("scheduler", "policy"), "SCHED_FAIR")), "process.scheduler.policy"),
    "scheduler-missing-policy": (_with(FULL, D(P + ("scheduler", "policy"))), "process.scheduler.policy"),
    "scheduler-bad-flag": (_with(FULL, S(P + ("scheduler", "flags", 0), "SCHED_FLAG_X")),
                           "process.scheduler.flags[0]"),
    "scheduler-nice-too-big": (_with(FULL, S(P + ("scheduler", "nice"), 2**31)), "process.scheduler.nice"),
    "ioPriority-bad-class": (_with(FULL, S(P + ("ioPriority", "class"), "IOPRIO_CLASS_NONE")),
                             "process.ioPriority.class"),
    "ioPriority-priority-8": (_with(FULL, S(P + ("ioPriority", "priority"), 8)), "process.ioPriority.priority"),
    "execCPUAffinity-number": (_with(FULL, S(P + ("execCPUAffinity", "final"), 3)),
                               "process.execCPUAffinity.final"),
    # hooks
    "hook-missing-path": (_with(FULL, D(["hooks", "poststop", 0, "path"])), "hooks.poststop[0].path"),
    "hook-relative-path": (_with(FULL, S(["hooks", "createRuntime", 0, "path"], "setup-network")),
                           "hooks.createRuntime[0].path"),
    "hook-timeout-zero": (_with(FULL, S(["hooks", "poststart", 0, "timeout"], 0)), "hooks.poststart[0].timeout"),
    "hooks-not-array": (_with(FULL, S(["hooks", "startContainer"], {"path": "/x"})), "hooks.startContainer"),
    # annotations
    "annotation-value-number": (_with(FULL, S(["annotations", "com.example.n"], 2)),
                                'annotations["com.example.n"]'),
    "annotation-empty-key": (_with(FULL, S(["annotations", ""], "v")), 'annotations[""]'),
    # linux
    "linux-not-object": (_with(FULL, S(["linux"], [])), "linux"),
    "namespace-bad-type": (_with(FULL, S(L + ("namespaces", 3, "type"), "net")), "linux.namespaces[3].type"),
    "namespace-missing-type": (_with(FULL, D(L + ("namespaces", 1, "type"))), "linux.namespaces[1].type"),
    "namespace-relative-path": (_with(FULL, S(L + ("namespaces", 1, "path"), "netns/neta")),
                                "linux.namespaces[1].path"),
    "uidMappings-negative-container-id": (_with(FULL, S(L + ("uidMappings", 0, "containerID"), -1)),
                                          "linux.uidMappings[0].containerID"),
    "timeOffsets-secs-string": (_with(FULL, S(L + ("timeOffsets", "monotonic", "secs"), "1")),
                                "linux.timeOffsets.monotonic.secs"),
    "timeOffsets-nanosecs-negative": (_with(FULL, S(L + ("timeOffsets", "boottime", "nanosecs"), -1)),
                                      "linux.timeOffsets.boottime.nanosecs"),
    "device-bad-type": (_with(FULL, S(L + ("devices", 0, "type"), "x")), "linux.devices[0].type"),
    "device-missing-path": (_with(FULL, D(L + ("devices", 1, "path"))), "linux.devices[1].path"),
    "device-char-without-major": (_with(FULL, D(L + ("devices", 0, "major"))), "linux.devices[0].major"),
    "device-fileMode-negative": (_with(FULL, S(L + ("devices", 0, "fileMode"), -1)), "linux.devices[0].fileMode"),
    "netDevice-name-number": (_with(FULL, S(L + ("netDevices", "eth1", "name"), 5)), "linux.netDevices.eth1.name"),
    "netDevice-empty-key": (_with(FULL, S(L + ("netDevices", ""), {})), 'linux.netDevices[""]'),
    "cgroupsPath-number": (_with(FULL, S(L + ("cgroupsPath",), 3)), "linux.cgroupsPath"),
    "resources-device-missing-allow": (_with(FULL, D(R + ("devices", 1, "allow"))),
                                       "linux.resources.devices[1].allow"),
    "resources-device-bad-type": (_with(FULL, S(R + ("devices", 1, "type"), "p")),
                                  "linux.resources.devices[1].type"),
    "resources-device-access-number": (_with(FULL, S(R + ("devices", 1, "access"), 7)),
                                       "linux.resources.devices[1].access"),
    "memory-limit-below-minus-one": (_with(FULL, S(R + ("memory", "limit"), -2)), "linux.resources.memory.limit"),
    "memory-swappiness-101": (_with(FULL, S(R + ("memory", "swappiness"), 101)), "linux.resources.memory.swappiness"),
    "memory-limit-string": (_with(FULL, S(R + ("memory", "limit"), "512M")), "linux.resources.memory.limit"),
    "cpu-shares-negative": (_with(FULL, S(R + ("cpu", "shares"), -1)), "linux.resources.cpu.shares"),
    "cpu-quota-float": (_with(FULL, S(R + ("cpu", "quota"), 0.5)), "linux.resources.cpu.quota"),
    "cpu-cpus-list": (_with(FULL, S(R + ("cpu", "cpus"), [0, 1])), "linux.resources.cpu.cpus"),
    "blkio-weight-too-big": (_with(FULL, S(R + ("blockIO", "weight"), 65536)), "linux.resources.blockIO.weight"),
    "blkio-weightDevice-no-weight": (_with(FULL, S(R + ("blockIO", "weightDevice", 1), {"major": 8, "minor": 16})),
                                     "linux.resources.blockIO.weightDevice[1]"),
    "blkio-throttle-missing-rate": (_with(FULL, D(R + ("blockIO", "throttleReadBpsDevice", 0, "rate"))),
                                    "linux.resources.blockIO.throttleReadBpsDevice[0].rate"),
    "blkio-throttle-missing-major": (_with(FULL, D(R + ("blockIO", "throttleWriteIOPSDevice", 0, "major"))),
                                     "linux.resources.blockIO.throttleWriteIOPSDevice[0].major"),
    "hugepage-bad-size": (_with(FULL, S(R + ("hugepageLimits", 0, "pageSize"), "2M")),
                          "linux.resources.hugepageLimits[0].pageSize"),
    "hugepage-missing-limit": (_with(FULL, D(R + ("hugepageLimits", 1, "limit"))),
                               "linux.resources.hugepageLimits[1].limit"),
    "network-priority-missing-name": (_with(FULL, D(R + ("network", "priorities", 0, "name"))),
                                      "linux.resources.network.priorities[0].name"),
    "network-classID-too-big": (_with(FULL, S(R + ("network", "classID"), 2**32)), "linux.resources.network.classID"),
    "pids-limit-string": (_with(FULL, S(R + ("pids", "limit"), "max")), "linux.resources.pids.limit"),
    "rdma-empty-entry": (_with(FULL, S(R + ("rdma", "mlx4_0"), {})), "linux.resources.rdma.mlx4_0"),
    "rdma-negative": (_with(FULL, S(R + ("rdma", "mlx5_1", "hcaHandles"), -3)),
                      "linux.resources.rdma.mlx5_1.hcaHandles"),
    "unified-value-number": (_with(FULL, S(R + ("unified", "pids.max"), 10)), 'linux.resources.unified["pids.max"]'),
    "intelRdt-memBw-prefix": (_with(FULL, S(L + ("intelRdt", "memBwSchema"), "L3:0=20")),
                              "linux.intelRdt.memBwSchema"),
    "intelRdt-memBw-newline": (_with(FULL, S(L + ("intelRdt", "memBwSchema"), "MB:0=20\nMB:1=70")),
                               "linux.intelRdt.memBwSchema"),
    "intelRdt-memBw-trailing-newline": (_with(FULL, S(L + ("intelRdt", "memBwSchema"), "MB:0=20\n")),
                                        "linux.intelRdt.memBwSchema"),
    "intelRdt-schemata-newline": (_with(FULL, S(L + ("intelRdt", "schemata", 0), "L2:0=f\n")),
                                  "linux.intelRdt.schemata[0]"),
    "sysctl-value-int": (_with(FULL, S(L + ("sysctl", "net.core.somaxconn"), 256)),
                         'linux.sysctl["net.core.somaxconn"]'),
    "seccomp-missing-defaultAction": (_with(FULL, D(SC + ("defaultAction",))), "linux.seccomp.defaultAction"),
    "seccomp-bad-defaultAction": (_with(FULL, S(SC + ("defaultAction",), "SCMP_ACT_DENY")),
                                  "linux.seccomp.defaultAction"),
    "seccomp-bad-arch": (_with(FULL, S(SC + ("architectures", 1), "x86")), "linux.seccomp.architectures[1]"),
    "seccomp-bad-flag": (_with(FULL, S(SC + ("flags", 0), "SECCOMP_FILTER_FLAG_NEW_LISTENER")),
                         "linux.seccomp.flags[0]"),
    "seccomp-errno-negative": (_with(FULL, S(SC + ("defaultErrnoRet",), -1)), "linux.seccomp.defaultErrnoRet"),
    "seccomp-metadata-without-path": (_with(FULL, D(SC + ("listenerPath",))), "linux.seccomp.listenerPath"),
    "seccomp-syscall-empty-names": (_with(FULL, S(SC + ("syscalls", 2, "names"), [])),
                                    "linux.seccomp.syscalls[2].names"),
    "seccomp-syscall-missing-action": (_with(FULL, D(SC + ("syscalls", 0, "action"))),
                                       "linux.seccomp.syscalls[0].action"),
    "seccomp-syscall-bad-action": (_with(FULL, S(SC + ("syscalls", 3, "action"), "SCMP_ACT_EPERM")),
                                   "linux.seccomp.syscalls[3].action"),
    "seccomp-bad-operator": (_with(FULL, S(SC + ("syscalls", 1, "args", 1, "op"), "SCMP_CMP_AND")),
                             "linux.seccomp.syscalls[1].args[1].op"),
    "seccomp-arg-missing-value": (_with(FULL, D(SC + ("syscalls", 1, "args", 0, "value"))),
                                  "linux.seccomp.syscalls[1].args[0].value"),
    "seccomp-arg-value-negative": (_with(FULL, S(SC + ("syscalls", 1, "args", 0, "value"), -1)),
                                   "linux.seccomp.syscalls[1].args[0].value"),
    "seccomp-arg-index-string": (_with(FULL, S(SC + ("syscalls", 1, "args", 0, "index"), "0")),
                                 "linux.seccomp.syscalls[1].args[0].index"),
    "rootfsPropagation-bad": (_with(FULL, S(L + ("rootfsPropagation",), "recursive")), "linux.rootfsPropagation"),
    "maskedPaths-relative": (_with(FULL, S(L + ("maskedPaths", 1), "proc/timer_list")), "linux.maskedPaths[1]"),
    "readonlyPaths-not-array": (_with(FULL, S(L + ("readonlyPaths",), "/proc/sys")), "linux.readonlyPaths"),
    "mountLabel-number": (_with(FULL, S(L + ("mountLabel",), 0)), "linux.mountLabel"),
    "personality-bad-domain": (_with(FULL, S(L + ("personality", "domain"), "LINUX64")),
                               "linux.personality.domain"),
    "personality-missing-domain": (_with(FULL, D(L + ("personality", "domain"))), "linux.personality.domain"),
    "memoryPolicy-bad-mode": (_with(FULL, S(L + ("memoryPolicy", "mode"), "MPOL_RANDOM")), "linux.memoryPolicy.mode"),
    "memoryPolicy-missing-mode": (_with(FULL, D(L + ("memoryPolicy", "mode"))), "linux.memoryPolicy.mode"),
    "memoryPolicy-bad-flag": (_with(FULL, S(L + ("memoryPolicy", "flags", 0), "MPOL_F_NODE")),
                              "linux.memoryPolicy.flags[0]"),
}

# Where the official (pre-1.1, draft-04) schemas and ours deliberately
# disagree on the part of a document the official schemas cover.  Each entry
# is asserted to *still* disagree, so this list cannot silently rot.
OFFICIAL_DIFFERS = {
    # ours stricter, following the spec prose
    "ociVersion-not-semver": "config.md: ociVersion MUST be SemVer 2.0.0",
    "ociVersion-trailing-newline": "config.md: ociVersion MUST be SemVer 2.0.0",
    "missing-root": "config.md: root is REQUIRED on all platforms but Windows",
    "mount-uidmap-without-gidmap": "config.md: uidMappings MUST be given along with gidMappings",
    "process-relative-cwd": "config.md: cwd MUST be an absolute path",
    "process-empty-args": "config.md: args needs at least one entry (non-Windows)",
    "user-missing-uid": "config.md: user.uid is REQUIRED on POSIX",
    "rlimit-unknown-type": "ours enumerates the Linux getrlimit(2) resources",
    "oomScoreAdj-out-of-range": "ours limits oomScoreAdj to the kernel's -1000..1000",
    "hook-relative-path": "config.md: hook path MUST be absolute",
    "annotation-empty-key": "config.md: annotation keys MUST NOT be empty",
    "namespace-relative-path": "config-linux.md: namespace path MUST be absolute",
    "device-char-without-major": "config-linux.md: major/minor REQUIRED unless type is p",
    "resources-device-bad-type": "config-linux.md: cgroup device type is a, c or b",
    "memory-limit-below-minus-one": "config-linux.md: memory values are bytes or -1",
    "memory-swappiness-101": "config-linux.md: swappiness is 0..100",
    "blkio-weightDevice-no-weight": "config-linux.md: weight or leafWeight MUST be given",
    "blkio-throttle-missing-rate": "config-linux.md: rate is REQUIRED",
    "rdma-empty-entry": "config-linux.md: hcaHandles or hcaObjects MUST be given",
    "intelRdt-memBw-trailing-newline": "Python's $ also matches before a final newline; ours forbids it",
    "seccomp-metadata-without-path": "config-linux.md: listenerMetadata MUST NOT be set without listenerPath",
    "maskedPaths-relative": "config-linux.md: masked paths MUST be absolute",
    "personality-missing-domain": "config-linux.md: personality.domain is REQUIRED",
    # ours more permissive
    "rprivate-propagation": "runc accepts and Docker/containerd emit the r-prefixed propagation values",
    "pids-without-limit": "runtime-spec 1.3 made pids.limit OPTIONAL",
    # values added to enums after the official schemas were published
    "time-namespace": "the time namespace (runtime-spec 1.1) is unknown to the official schema",
    "new-seccomp-arch": "SCMP_ARCH_LOONGARCH64 (libseccomp 2.6) is unknown to the official schema",
    # the official FileMode caps at 512, the prose says uint32 (S_IFCHR|0666 = 8630 is fine)
    "big-fileMode": "config-linux.md: fileMode is uint32; the official schema caps it at 512",
}


def _state(**kw):
    doc = {"ociVersion": "1.3.0", "id": "c1", "status": "running", "pid": 4242,
           "bundle": "/containers/c1", "annotations": {"com.example.k": "v"}}
    doc.update(kw)
    return {k: v for k, v in doc.items() if v is not None}


GOOD_STATES = {
    "running": _state(),
    "creating-without-pid": _state(status="creating", pid=None),
    "stopped-pid-zero": _state(status="stopped", pid=0),
    "paused": _state(status="paused"),
    "runc-extras": _state(rootfs="/containers/c1/rootfs", created="2024-01-01T00:00:00Z", owner=""),
}
BAD_STATES = {
    "missing-id": (_state(id=None), "id"),
    "bad-status": (_state(status="exited"), "status"),
    "running-without-pid": (_state(pid=None), "pid"),
    "negative-pid": (_state(pid=-1), "pid"),
    "missing-bundle": (_state(bundle=None), "bundle"),
    "relative-bundle": (_state(bundle="c1"), "bundle"),
    "annotation-not-string": (_state(annotations={"a": 1}), "annotations.a"),
    "ociVersion-not-semver": (_state(ociVersion="v1"), "ociVersion"),
}
STATE_OFFICIAL_DIFFERS = {
    "paused": "'paused' is runc's extra status; the spec allows runtime-defined states",
    "running-without-pid": "runtime.md: pid REQUIRED when created/running on Linux",
    "relative-bundle": "runtime.md: bundle is an absolute path",
    "ociVersion-not-semver": "ociVersion MUST be SemVer",
}

GOOD_FEATURES = {
    "minimal": {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0"},
    "nulls": {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "hooks": None,
              "linux": {"namespaces": None, "cgroup": None, "seccomp": {"enabled": None}}},
    "full": {
        "ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["bind", "rbind", "ro", "idmap"],
        "annotations": {"org.opencontainers.runc.version": "1.1.5"},
        "potentiallyUnsafeConfigAnnotations": ["org.systemd.property."],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": ["CAP_CHOWN"],
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": True, "rdma": False},
            "seccomp": {"enabled": True, "actions": ["SCMP_ACT_ALLOW"], "operators": ["SCMP_CMP_EQ"],
                        "archs": ["SCMP_ARCH_X86_64"], "knownFlags": ["SECCOMP_FILTER_FLAG_LOG"],
                        "supportedFlags": []},
            "apparmor": {"enabled": True}, "selinux": {"enabled": False},
            "intelRdt": {"enabled": False, "schemata": True, "monitoring": False},
            "memoryPolicy": {"modes": ["MPOL_BIND"], "flags": ["MPOL_F_STATIC_NODES"]},
            "mountExtensions": {"idmap": {"enabled": True}},
            "netDevices": {"enabled": True},
        },
    },
}
BAD_FEATURES = {
    "missing-ociVersionMax": ({"ociVersionMin": "1.0.0"}, "ociVersionMax"),
    "unknown-top-level": ({"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "foo": 1}, "foo"),
    "hooks-not-strings": ({"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "hooks": [1]}, "hooks[0]"),
    "cgroup-v2-string": ({"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0",
                          "linux": {"cgroup": {"v2": "yes"}}}, "linux.cgroup.v2"),
    "unknown-linux-key": ({"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0",
                           "linux": {"bpf": {}}}, "linux.bpf"),
    "idmap-enabled-int": ({"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0",
                           "linux": {"mountExtensions": {"idmap": {"enabled": 1}}}},
                          "linux.mountExtensions.idmap.enabled"),
}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _ours_error(validate, doc):
    try:
        validate(doc)
    except SchemaError as e:
        return e
    return None


def _run_spec(tmp_path, tool, *flags):
    """`<tool> spec [flags]` in a fresh directory; the config.json it writes."""
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed")
    d = tmp_path / (tool + "".join(flags))
    d.mkdir()
    subprocess.run([exe, "spec", *flags], cwd=d, check=True, capture_output=True)
    return json.loads((d / "config.json").read_text())


def _run_runc_spec(tmp_path, *flags):
    return _run_spec(tmp_path, "runc", *flags)


# --------------------------------------------------------------------------
# the generated module
# --------------------------------------------------------------------------

def _generator():
    spec = importlib.util.spec_from_file_location("gen_validator", REPO / "scripts" / "gen_validator.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_module_is_up_to_date():
    gen = _generator()
    current = (REPO / "runtime" / "_config_validator.py").read_text()
    assert gen.generate() == current, "run: .venv/bin/python scripts/gen_validator.py"


def test_generator_check_mode_reports_fresh_and_stale(tmp_path, capsys):
    gen = _generator()
    assert gen.main(["--check"]) == 0
    stale = tmp_path / "stale.py"
    stale.write_text("# old\n")
    assert gen.main(["--check", "--output", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err


def test_generated_module_header_names_its_generator():
    head = (REPO / "runtime" / "_config_validator.py").read_text().splitlines()[:3]
    assert head[0].startswith("# GENERATED FILE")
    assert "scripts/gen_validator.py" in head[1]


def test_generated_module_imports_only_re():
    # The generated module takes its check constructors from
    # runtime/_schema_checks.py, which in turn needs nothing but `re`,
    # imported lazily inside the pattern checker.
    import ast
    imported = set()
    for name in ("_config_validator.py", "_schema_checks.py"):
        tree = ast.parse((REPO / "runtime" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
    assert imported <= {"re", "runtime._schema_checks"}, imported


@pytest.mark.parametrize("bad_schema, word", [
    ({"type": "object", "properties": {"a": {"type": "string", "format": "uri"}}}, "format"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "object", "properties": {"a": True}}, "boolean"),
    ({"$ref": "other.json#/x"}, "$ref"),
    ({"type": "strnig"}, "strnig"),
])
def test_generator_rejects_unsupported_schema(bad_schema, word):
    gen = _generator()
    with pytest.raises(gen.SchemaCompileError) as info:
        gen.Compiler().compile_document("check_x", bad_schema, "x", "test.json")
    assert word in str(info.value)


def test_validate_does_not_import_jsonschema():
    code = ("import sys, runtime.validate as v; "
            "v.validate_config({'ociVersion': '1.3.0', 'root': {'path': 'rootfs'}}); "
            "print(sorted(m for m in sys.modules if m.startswith(('jsonschema', 'referencing'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------
# config corpus: ours vs jsonschema(ours)
# --------------------------------------------------------------------------

def test_corpus_has_enough_bad_configs():
    assert len(BAD_CONFIGS) >= 40


@pytest.mark.parametrize("name", sorted(GOOD_CONFIGS))
def test_good_config(name):
    doc = GOOD_CONFIGS[name]
    assert _ours_error(validate_config, doc) is None
    assert REF_CONFIG.is_valid(doc)


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config(name):
    doc, field = BAD_CONFIGS[name]
    err = _ours_error(validate_config, doc)
    assert err is not None, f"{name}: accepted"
    assert not REF_CONFIG.is_valid(doc), f"{name}: jsonschema with our schema accepts it"
    assert err.field == field
    assert str(err) == f"config.json: {err.field}: {err.problem}"
    assert "\n" not in str(err) and err.problem


@pytest.mark.parametrize("flags", [(), ("--rootless",)])
def test_runc_spec_output_is_valid(tmp_path, flags):
    doc = _run_runc_spec(tmp_path, *flags)
    assert _ours_error(validate_config, doc) is None
    assert REF_CONFIG.is_valid(doc)


@pytest.mark.parametrize("flags", [(), ("--rootless",)])
def test_crun_spec_output_is_valid(tmp_path, flags):
    doc = _run_spec(tmp_path, "crun", *flags)
    assert _ours_error(validate_config, doc) is None
    assert REF_CONFIG.is_valid(doc)


def test_error_messages_are_specific():
    e = _ours_error(validate_config, BAD_CONFIGS["user-uid-negative"][0])
    assert str(e) == "config.json: process.user.uid: must fit in uint32 (0..4294967295) (got -1)"
    e = _ours_error(validate_config, BAD_CONFIGS["namespace-bad-type"][0])
    assert e.problem.startswith("must be one of pid, network, mount") and "'net'" in e.problem
    e = _ours_error(validate_config, BAD_CONFIGS["process-missing-cwd"][0])
    assert e.problem == "is required"
    e = _ours_error(validate_config, BAD_CONFIGS["mount-option-number"][0])
    assert e.problem == "must be a string (got integer)"
    e = _ours_error(validate_config, BAD_CONFIGS["blkio-weightDevice-no-weight"][0])
    assert e.problem == "must set at least one of weight, leafWeight"


def test_schema_error_is_a_value_error():
    e = _ours_error(validate_config, {"ociVersion": "1.3.0"})
    assert isinstance(e, ValueError)
    assert (e.field, e.problem) == ("root", "is required")


# --------------------------------------------------------------------------
# state and features
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GOOD_STATES))
def test_good_state(name):
    assert _ours_error(validate_state, GOOD_STATES[name]) is None
    assert REF_STATE.is_valid(GOOD_STATES[name])


@pytest.mark.parametrize("name", sorted(BAD_STATES))
def test_bad_state(name):
    doc, field = BAD_STATES[name]
    err = _ours_error(validate_state, doc)
    assert err is not None and not REF_STATE.is_valid(doc)
    assert err.field == field
    assert str(err).startswith(f"state.json: {field}: ")


@pytest.mark.parametrize("name", sorted(GOOD_FEATURES))
def test_good_features(name):
    assert _ours_error(validate_features, GOOD_FEATURES[name]) is None
    assert REF_FEATURES.is_valid(GOOD_FEATURES[name])


@pytest.mark.parametrize("name", sorted(BAD_FEATURES))
def test_bad_features(name):
    doc, field = BAD_FEATURES[name]
    err = _ours_error(validate_features, doc)
    assert err is not None and not REF_FEATURES.is_valid(doc)
    assert err.field == field


def test_runc_features_output_is_valid():
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not installed")
    doc = json.loads(subprocess.run([runc, "features"], check=True, capture_output=True).stdout)
    assert _ours_error(validate_features, doc) is None
    assert REF_FEATURES.is_valid(doc)


# --------------------------------------------------------------------------
# cross-check against the official schemas (Debian golang-github-opencontainers-specs-dev)
# --------------------------------------------------------------------------

def _official():
    if not OFFICIAL_DIR.is_dir():
        pytest.skip(f"official schemas not installed ({OFFICIAL_DIR})")
    resources = []
    for path in sorted(OFFICIAL_DIR.glob("*.json")):
        contents = json.loads(path.read_text())
        res = referencing.Resource.from_contents(contents, default_specification=referencing.jsonschema.DRAFT4)
        resources.append((path.as_uri(), res))
        if "id" in contents:  # none of the current files has one, but honour it if present
            resources.append((contents["id"], res))
    registry = referencing.Registry().with_resources(resources)
    return registry


@pytest.fixture(scope="module")
def official():
    registry = _official()

    def validator(name):
        uri = (OFFICIAL_DIR / name).as_uri()
        schema = registry.contents(uri)
        return jsonschema.Draft4Validator(schema, registry=registry,
                                          _resolver=registry.resolver(base_uri=uri)), uri

    return registry, validator


def _prune(instance, schema, resolver):
    """Keep only the parts of `instance` that `schema` (an official schema) describes."""
    if not isinstance(schema, dict):
        return instance
    if "$ref" in schema:
        resolved = resolver.lookup(schema["$ref"])
        return _prune(instance, resolved.contents, resolved.resolver)
    subschemas = [schema] + list(schema.get("allOf", [])) + list(schema.get("anyOf", []))
    flat = []
    for sub in subschemas:
        res = resolver
        while isinstance(sub, dict) and "$ref" in sub:
            looked = res.lookup(sub["$ref"])
            sub, res = looked.contents, looked.resolver
        flat.append((sub, res))
    if isinstance(instance, dict):
        props, extra = {}, None
        for sub, res in flat:
            for k, v in sub.get("properties", {}).items():
                props.setdefault(k, (v, res))
            if isinstance(sub.get("additionalProperties"), dict):
                extra = (sub["additionalProperties"], res)
            for v in sub.get("patternProperties", {}).values():
                extra = (v, res)
        if not props and extra is None:
            return instance
        out = {}
        for k, v in instance.items():
            if k in props:
                out[k] = _prune(v, *props[k])
            elif extra is not None:
                out[k] = _prune(v, *extra)
        return out
    if isinstance(instance, list):
        for sub, res in flat:
            if isinstance(sub.get("items"), dict):
                return [_prune(v, sub["items"], res) for v in instance]
    return instance


def _official_vs_ours(official, schema_file, ours_validate, doc):
    registry, make = official
    validator, uri = make(schema_file)
    pruned = _prune(doc, validator.schema, registry.resolver(base_uri=uri))
    return validator.is_valid(pruned), _ours_error(ours_validate, pruned) is None, pruned


def test_official_schemas_load(official):
    validator, _ = official[1]("config-schema.json")
    assert validator.is_valid({"ociVersion": "1.0.0"})
    assert not validator.is_valid({"ociVersion": "1.0.0", "linux": {"namespaces": [{"type": "bogus"}]}})


def _config_corpus():
    for name, doc in GOOD_CONFIGS.items():
        yield name, doc
    for name, (doc, _) in BAD_CONFIGS.items():
        yield name, doc


def test_official_accepts_the_base_documents(official):
    # Otherwise every bad config derived from them would "agree" trivially.
    for doc in (MINIMAL, FULL):
        off_ok, our_ok, _ = _official_vs_ours(official, "config-schema.json", validate_config, doc)
        assert off_ok and our_ok


@pytest.mark.parametrize("name", sorted(n for n, _ in _config_corpus()))
def test_config_agrees_with_official_schema(official, name):
    doc = dict(_config_corpus())[name]
    off_ok, our_ok, pruned = _official_vs_ours(official, "config-schema.json", validate_config, doc)
    if name in OFFICIAL_DIFFERS:
        assert off_ok != our_ok, f"{name} no longer differs ({OFFICIAL_DIFFERS[name]}); drop it from OFFICIAL_DIFFERS"
    else:
        assert off_ok == our_ok, f"{name}: official={off_ok} ours={our_ok} on {json.dumps(pruned)[:300]}"


@pytest.mark.parametrize("flags", [(), ("--rootless",)])
def test_runc_spec_agrees_with_official_schema(official, tmp_path, flags):
    doc = _run_runc_spec(tmp_path, *flags)
    off_ok, our_ok, _ = _official_vs_ours(official, "config-schema.json", validate_config, doc)
    assert off_ok and our_ok


@pytest.mark.parametrize("name", sorted(list(GOOD_STATES) + list(BAD_STATES)))
def test_state_agrees_with_official_schema(official, name):
    doc = GOOD_STATES[name] if name in GOOD_STATES else BAD_STATES[name][0]
    off_ok, our_ok, _ = _official_vs_ours(official, "state-schema.json", validate_state, doc)
    if name in STATE_OFFICIAL_DIFFERS:
        assert off_ok != our_ok
    else:
        assert off_ok == our_ok


# --------------------------------------------------------------------------
# timing (reported, not asserted: machines differ)
# --------------------------------------------------------------------------

def test_report_timings():
    """Print cold-start numbers for the final report (`pytest -s` shows them)."""
    code = (
        "import time, json, sys\n"
        "cfg = json.loads(sys.argv[1])\n"
        "t0 = time.perf_counter()\n"
        "import runtime.validate as v\n"
        "t1 = time.perf_counter()\n"
        "v.validate_config(cfg)\n"
        "t2 = time.perf_counter()\n"
        "n = 2000\n"
        "for _ in range(n):\n"
        "    v.validate_config(cfg)\n"
        "t3 = time.perf_counter()\n"
        "print(f'{(t1 - t0) * 1e3:.2f} {(t2 - t1) * 1e3:.2f} {(t3 - t2) / n * 1e6:.1f}')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, json.dumps(FULL)], cwd=REPO,
                         check=True, capture_output=True, text=True).stdout.split()
    import_ms, first_ms, each_us = map(float, out)
    t = time.perf_counter()
    REF_CONFIG.is_valid(FULL)
    ref_us = (time.perf_counter() - t) * 1e6
    print(f"\nimport runtime.validate {import_ms:.2f} ms, first validate_config(FULL) {first_ms:.2f} ms,"
          f" then {each_us:.1f} us each; jsonschema (warm) {ref_us:.0f} us;"
          f" PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}")
    assert import_ms > 0 and each_us > 0
