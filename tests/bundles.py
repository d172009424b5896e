"""Test helpers: build busybox bundles and drive pyrunc (or runc) on them."""
import json
import os
import shutil
import subprocess
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VENV_BIN = os.path.join(REPO, ".venv", "bin")
PYRUNC = os.environ.get("PYRUNC", os.path.join(VENV_BIN, "pyrunc"))
if not os.path.exists(PYRUNC):
    PYRUNC = shutil.which("pyrunc") or PYRUNC

sys.path.insert(0, REPO)
from runtime.specgen import default_spec  # noqa: E402


def make_rootfs(path) -> str:
    """A minimal rootfs: static busybox with every applet linked in /bin."""
    path = str(path)
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "var"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2("/bin/busybox", os.path.join(path, "bin", "busybox"))
    out = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout
    for applet in out.split():
        if applet != "busybox":
            try:
                os.symlink("busybox", os.path.join(path, "bin", applet))
            except FileExistsError:
                pass
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
                "app:x:1000:1000::/tmp:/bin/sh\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\napp:x:1000:\nnogroup:x:65534:\n")
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    return path


class Runtime:
    """Runs pyrunc with a private --root and tracks containers for cleanup."""

    def __init__(self, tmp_path, rootfs: str, binary: str = PYRUNC):
        self.tmp = str(tmp_path)
        self.root = os.path.join(self.tmp, "state")
        self.rootfs = rootfs
        self.binary = binary
        self.ids: list[str] = []

    def bundle(self, args=None, name=None, mutate=None, rootfs=None, **proc) -> str:
        """Write a bundle dir whose root.path points at the shared rootfs."""
        b = os.path.join(self.tmp, name or f"b-{uuid.uuid4().hex[:8]}")
        os.makedirs(b, exist_ok=True)
        cfg = default_spec(args=args or ["true"], terminal=False)
        cfg["root"] = {"path": rootfs or self.rootfs, "readonly": True}
        cfg["process"].update(proc)
        if mutate:
            mutate(cfg)
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump(cfg, f)
        return b

    def new_id(self) -> str:
        cid = f"t{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def __call__(self, *args, input=None, timeout=60, check=False, **kw):
        """Run pyrunc. Output goes through files, not pipes: a created or
        detached container inherits (and keeps) the caller's stdio."""
        import tempfile
        cmd = [self.binary, "--root", self.root, *args]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            if input is None:
                kw.setdefault("stdin", subprocess.DEVNULL)
            p = subprocess.run(cmd, stdout=out, stderr=err, text=True, input=input, timeout=timeout, **kw)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        if check and p.returncode != 0:
            raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stderr}")
        return p

    def state(self, cid: str) -> dict:
        p = self("state", cid, check=True)
        return json.loads(p.stdout)

    def wait_status(self, cid: str, want: str, timeout: float = 10) -> None:
        """Poll `state` until the container is `want`; AssertionError after timeout."""
        import time
        end = time.monotonic() + timeout
        s = None
        while time.monotonic() < end:
            p = self("state", cid)
            s = json.loads(p.stdout)["status"] if p.returncode == 0 else None
            if s == want:
                return
            time.sleep(0.02)
        raise AssertionError(f"{cid} never became {want} (last: {s})")

    def cleanup(self) -> None:
        for cid in self.ids:
            self("delete", "--force", cid)
        left = os.listdir(self.root) if os.path.isdir(self.root) else []
        assert not left, f"containers left in {self.root}: {left}"


def run_in_pty(argv: list[str], *, env: dict | None = None, timeout: float = 30,
               answer: tuple[bytes, bytes] | None = None) -> tuple[int, bytes]:
    """Run argv with a new pty as its controlling terminal; return (exit code,
    everything it wrote). `answer` = (prompt, reply): write reply once the
    output contains prompt."""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        if env:
            os.environ.update(env)
        os.execv(argv[0], argv)
    out = b""
    pending = answer
    while True:
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if pending and pending[0] in out:
            os.write(fd, pending[1])
            pending = None
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out
