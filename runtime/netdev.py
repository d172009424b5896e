"""linux.netDevices: host interfaces moved into the container's network
namespace (and renamed) by the parent, after GO and before APPLIED."""
from runtime.toolkit import os_lite as os

from runtime.errors import RuntimeFailure


def move_net_devices(devices: dict, pid: int) -> None:
    """linux.netDevices: move each host interface into the container's network
    namespace (renamed when asked). Physical devices return to the host when
    that namespace goes away."""
    import subprocess
    for host_name, spec in devices.items():
        cmd = ["ip", "link", "set", "dev", host_name, "netns", str(pid)]
        if (spec or {}).get("name"):
            cmd += ["name", spec["name"]]
        name = (spec or {}).get("name") or host_name
        # Spec: the device is set "up" once it is in the container.
        up = ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "link", "set", "dev", name, "up"]
        for c in (cmd, up):
            p = subprocess.run(c, capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeFailure(f"config.json: linux.netDevices.{host_name}: "
                                     f"{p.stderr.strip() or 'ip link failed'}")
