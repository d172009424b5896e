"""Volume copy-up as root: what an unprivileged copy cannot keep (owners,
setuid bits, device nodes, trusted.* xattrs) is kept, overlayfs' own
metadata is not, and symlinks out of the rootfs are still not followed."""
import os
import stat

import pytest

from imagetool.engine.volumes import Volumes


@pytest.fixture
def rootfs(tmp_path):
    r = tmp_path / "rootfs"
    d = r / "srv" / "data"
    d.mkdir(parents=True)
    os.chown(d, 1234, 5678)
    (d / "owned").write_text("x")
    os.chown(d / "owned", 1000, 2000)
    (d / "suid").write_text("#!/bin/sh\n")
    os.chown(d / "suid", 0, 0)
    os.chmod(d / "suid", 0o4755)
    os.mknod(d / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.symlink("/", d / "root-link")
    os.lchown(d / "root-link", 77, 88)
    os.setxattr(d / "owned", "trusted.overlay.opaque", b"y")
    os.setxattr(d / "owned", "trusted.pyimg-test", b"kept")
    return r


def test_seed_as_root_keeps_owners_modes_devices_and_xattrs(tmp_path, rootfs):
    vols = Volumes(str(tmp_path / "store"))
    vols.create("data")
    assert vols.seed("data", str(rootfs), "/srv/data") is True
    mp = vols.mountpoint("data")
    st = os.stat(mp)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    st = os.stat(os.path.join(mp, "owned"))
    assert (st.st_uid, st.st_gid) == (1000, 2000)
    assert stat.S_IMODE(os.stat(os.path.join(mp, "suid")).st_mode) == 0o4755  # mode set after the owner
    st = os.lstat(os.path.join(mp, "null"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    st = os.lstat(os.path.join(mp, "root-link"))
    assert stat.S_ISLNK(st.st_mode) and (st.st_uid, st.st_gid) == (77, 88)
    assert os.readlink(os.path.join(mp, "root-link")) == "/"
    attrs = os.listxattr(os.path.join(mp, "owned"))
    assert "trusted.pyimg-test" in attrs and "trusted.overlay.opaque" not in attrs
    # the link to "/" was not walked: only the image's entries are in the volume
    assert sorted(os.listdir(mp)) == ["null", "owned", "root-link", "suid"]
