"""Small pure functions of the runtime: mount data with SELinux labels and
capability name checks."""
import os
import subprocess
import sys

from runtime import caps, rootfs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_mount_data_without_label():
    assert rootfs.mount_data("tmpfs", ["mode=755", "size=65536k"], None) == "mode=755,size=65536k"
    assert rootfs.mount_data("tmpfs", [], None) is None


def test_mount_data_label_on_labelable_fs():
    lab = "system_u:object_r:container_file_t:s0:c1,c2"
    # the label holds a comma, so it is quoted as mount(8) and runc do
    assert rootfs.mount_data("tmpfs", ["mode=755"], lab) == f'mode=755,context="{lab}"'
    assert rootfs.mount_data("devpts", [], lab) == f'context="{lab}"'


def test_mount_data_label_skips_self_labelled_fs():
    for t in ("proc", "sysfs", "mqueue", "cgroup", "cgroup2"):
        assert rootfs.mount_data(t, ["nosuid"], "x:y:z:s0") == "nosuid"


def test_unknown_capability_name():
    assert caps.unknown_name(None) is None
    assert caps.unknown_name({"bounding": ["CAP_KILL", "CAP_CHECKPOINT_RESTORE"]}) is None
    assert caps.unknown_name({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL", "CAP_TEST"]}) == \
        ("effective", 1, "CAP_TEST")
    # names are case-sensitive, as in capabilities(7) and the spec's examples
    assert caps.unknown_name({"ambient": ["cap_kill"]}) == ("ambient", 0, "cap_kill")


def test_unknown_capability_error_names_the_field_or_flag():
    assert caps.unknown_error({"bounding": ["CAP_KILL"]}) is None
    assert caps.unknown_error({"permitted": ["CAP_KILL", "CAP_TEST"]}) == \
        "process.capabilities.permitted[1]: unknown capability 'CAP_TEST'"
    assert caps.unknown_error({"bounding": ["CAP_NOPE"]}, ["CAP_NOPE"]) == "--cap: unknown capability 'CAP_NOPE'"


def test_stage1_that_cannot_load_init_reports_an_error():
    """container._stage1 loads init in the child; if that fails the parent
    gets an error message on the channel (not a hang), naming the cause."""
    import pytest

    from runtime import container, sync
    from runtime.errors import InitFailure
    parent, child = sync.Channel.pair()
    pid = os.fork()
    if pid == 0:
        try:
            parent.close()
            container._stage1({"chan": child}, {}, None)  # no "cid": Context() fails
        finally:
            os._exit(99)  # not reached: _stage1 exits 1 itself
    child.close()
    with pytest.raises(InitFailure, match=r"cannot load pyrunc's init: 'cid'"):
        parent.next()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
    parent.close()


def test_channel_reports_the_error_a_peer_sent_before_it_went():
    """A peer that exits with one of our messages unread makes the kernel
    report ECONNRESET once, ahead of what it sent before going: its ERROR
    still reaches the reader (not "exited unexpectedly")."""
    import pytest

    from runtime import sync
    from runtime.errors import InitFailure
    parent, child = sync.Channel.pair()
    parent.send(sync.APPLIED)            # the child never reads it
    child.send(sync.ERROR, msg="mount /proc: boom")
    child.close()
    with pytest.raises(InitFailure, match="^mount /proc: boom$"):
        parent.next()
    parent.close()


def test_drop_bounding_without_setpcap_fails_only_for_a_capability_still_there():
    # A process without CAP_SETPCAP in its effective set cannot drop
    # anything: asking to drop what the bounding set no longer has is fine,
    # asking to drop one it has is an error.
    prog = ("import sys; sys.path.insert(0, %r)\n"
            "from runtime import caps, syscalls as sc\n"
            "eff, prm, inh = sc.capget()\n"
            "sc.capset(eff & ~(1 << 8), prm, inh)  # CAP_SETPCAP\n"
            "have = sum(1 << i for i in range(caps.last_cap() + 1) if sc.prctl(sc.PR_CAPBSET_READ, i) == 1)\n"
            "caps.drop_bounding(have)\n"
            "print('absent ok')\n"
            "try:\n"
            "    caps.drop_bounding(have & ~1)  # CAP_CHOWN, still in the set\n"
            "except PermissionError:\n"
            "    print('present refused')\n" % REPO)
    out = subprocess.run([sys.executable, "-I", "-S", "-c", prog], capture_output=True, text=True)
    assert out.stdout.split("\n")[:2] == ["absent ok", "present refused"], out.stderr
