"""The main job, end to end, on one machine with no internet:

1. start Debian's docker-registry on 127.0.0.1 and push a busybox image to it;
2. `pyimg pull` it into a private store;
3. `pyimg unpack` it into a bundle (overlay: a writable layer of its own);
4. `pyrunc run` the bundle, whose output is the container's own view;
5. remove the bundle and stop the registry.

Exits with the container's status.
"""
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import registry_util as ru  # noqa: E402  (the same registry helpers the tests use)

BIN = os.path.join(REPO, ".venv", "bin")


def sh(*cmd: str) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    if os.geteuid() != 0:
        sys.exit("demo: run as root (containers need it)")
    tmp = tempfile.mkdtemp(prefix="pyrunc-demo-")
    reg = ru.start_registry(os.path.join(tmp, "registry"))
    store, bundle = os.path.join(tmp, "store"), os.path.join(tmp, "bundle")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    try:
        layer = ru.busybox_layer()
        script = ("echo \"Hello from a pyrunc container: $(hostname), pid $$, uid $(id -u)\"; "
                  "echo \"rootfs: $(ls / | tr '\\n' ' ')\"; "
                  "echo 'written in my own layer' > /greeting && cat /greeting")
        cfg = ru.make_config([layer], arch=arch, cmd=["sh", "-c", script])
        ru.push_image(reg.host, "library/busybox", "latest", [layer], cfg)
        ref = f"{reg.host}/library/busybox:latest"
        sh(f"{BIN}/pyimg", "--root", store, "pull", ref)
        sh(f"{BIN}/pyimg", "--root", store, "unpack", ref, bundle)
        print(f"$ {BIN}/pyrunc run --bundle {bundle} demo", flush=True)
        rc = subprocess.run([f"{BIN}/pyrunc", "--root", os.path.join(tmp, "run"), "run",
                             "--bundle", bundle, "demo"]).returncode
        sh(f"{BIN}/pyimg", "--root", store, "rm-bundle", bundle)
        print(f"demo: container exited with status {rc}")
        if rc:
            return rc
        # The engine, docker's way (a private network namespace: the demo
        # touches no interface of the host's).
        pyimg = [f"{BIN}/pyimg", "--root", store]
        sh(*pyimg, "run", "-d", "--network", "none", "--name", "demo-web", ref, "sh", "-c",
           "echo serving; while true; do sleep 1; done")
        sh(*pyimg, "ps")
        time.sleep(0.5)
        sh(*pyimg, "logs", "demo-web")
        sh(*pyimg, "exec", "demo-web", "sh", "-c", "echo exec in $(hostname)")
        sh(*pyimg, "stop", "-t", "1", "demo-web")
        sh(*pyimg, "ps", "-a")
        sh(*pyimg, "rm", "demo-web")
        return 0
    finally:
        subprocess.run([f"{BIN}/pyimg", "--root", store, "rm", "-f", "demo-web"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        reg.stop()
        subprocess.run(["umount", "-R", bundle + "/rootfs"], stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
