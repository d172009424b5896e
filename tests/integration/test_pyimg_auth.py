"""Registry authentication: basic (htpasswd), bearer tokens, docker.io defaults,
login/logout, credential helpers, redirects."""
import base64
import json
import os
import stat
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from registry_util import ok as _ok, fail_one_line as _fail_one_line  # noqa: E402
from registry_util import (FaultProxy, busybox_layer, make_layer, push_image,  # noqa: E402
                           run_pyimg, start_registry, start_token_server,
                           write_pyimg_config)

from imagetool.store import Store  # noqa: E402


@pytest.fixture
def basic_registry(tmp_path):
    reg = start_registry(tmp_path, htpasswd={"alice": "s3cret"})
    try:
        yield reg
    finally:
        reg.stop()


def test_basic_auth_login_pull_logout(basic_registry, tmp_path):
    reg = basic_registry
    root = tmp_path / "store"
    cfg = write_pyimg_config(tmp_path)
    dcfg = tmp_path / "docker-config" / "config.json"
    d = push_image(reg.host, "private/app", "v1", [busybox_layer()], auth=("alice", "s3cret"))
    ref = f"{reg.host}/private/app:v1"

    p = run_pyimg(root, "pull", ref, config=cfg)
    _fail_one_line(p, ref, "authentication required")

    p = run_pyimg(root, "login", reg.host, "-u", "alice", "--password-stdin", config=cfg,
                  input="wrong\n")
    _fail_one_line(p, reg.host, "login failed")
    assert not dcfg.exists()

    p = _ok(run_pyimg(root, "login", reg.host, "-u", "alice", "--password-stdin", config=cfg,
                      input="s3cret\n"))
    assert "Login Succeeded" in p.stdout
    saved = json.loads(dcfg.read_text())
    assert base64.b64decode(saved["auths"][reg.host]["auth"]).decode() == "alice:s3cret"
    assert stat.S_IMODE(os.stat(dcfg).st_mode) == 0o600

    _ok(run_pyimg(root, "pull", ref, config=cfg))
    assert Store(str(root)).resolve(ref)[0] == d

    p = _ok(run_pyimg(root, "logout", reg.host, config=cfg))
    assert reg.host not in json.loads(dcfg.read_text()).get("auths", {})
    p = run_pyimg(root, "logout", reg.host, config=cfg)
    _fail_one_line(p, "not logged in")


def test_wrong_stored_credentials_fail_cleanly(basic_registry, tmp_path):
    reg = basic_registry
    root = tmp_path / "store"
    cfg = write_pyimg_config(tmp_path)
    push_image(reg.host, "app", "v1", [busybox_layer()], auth=("alice", "s3cret"))
    push_image(reg.host, "app", "v0", [make_layer({"x": "0"})], auth=("alice", "s3cret"))
    dcfg = tmp_path / "docker-config"
    dcfg.mkdir()
    (dcfg / "config.json").write_text(json.dumps({"auths": {reg.host: {
        "auth": base64.b64encode(b"alice:nope").decode()}}}))
    p = run_pyimg(root, "pull", f"{reg.host}/app:v1", config=cfg)
    _fail_one_line(p, f"{reg.host}/app:v1", "alice")
    assert not (root / "blobs").exists() or os.listdir(root / "blobs" / "sha256") == []


def test_docker_config_env_and_credential_helper(basic_registry, tmp_path):
    """credsStore: `docker-credential-NAME get|store|erase` on PATH, and
    $DOCKER_CONFIG when the config file names no docker_config dir."""
    reg = basic_registry
    root = tmp_path / "store"
    push_image(reg.host, "app", "v1", [busybox_layer()], auth=("alice", "s3cret"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    secrets = tmp_path / "helper-secrets.json"
    helper = bindir / "docker-credential-pyimgtest"
    helper.write_text(f"""#!{sys.executable}
import json, sys
path = {str(secrets)!r}
try:
    db = json.load(open(path))
except FileNotFoundError:
    db = {{}}
action = sys.argv[1]
data = sys.stdin.read()
if action == "store":
    d = json.loads(data); db[d["ServerURL"]] = [d["Username"], d["Secret"]]
    json.dump(db, open(path, "w"))
elif action == "get":
    if data.strip() not in db:
        print("credentials not found in native keychain"); sys.exit(1)
    u, s = db[data.strip()]
    print(json.dumps({{"ServerURL": data.strip(), "Username": u, "Secret": s}}))
elif action == "erase":
    db.pop(data.strip(), None); json.dump(db, open(path, "w"))
""")
    helper.chmod(0o755)
    dockerdir = tmp_path / "dockerenv"
    dockerdir.mkdir()
    (dockerdir / "config.json").write_text(json.dumps({"credsStore": "pyimgtest",
                                                        "otherKey": {"kept": True}}))
    cfg = write_pyimg_config(tmp_path, docker_config=None)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "DOCKER_CONFIG": str(dockerdir)}
    _ok(run_pyimg(root, "login", reg.host, "-u", "alice", "--password-stdin", config=cfg,
                  input="s3cret", env=env))
    assert json.loads(secrets.read_text()) == {reg.host: ["alice", "s3cret"]}
    saved = json.loads((dockerdir / "config.json").read_text())
    assert "s3cret" not in json.dumps(saved) and saved["otherKey"] == {"kept": True}
    _ok(run_pyimg(root, "pull", f"{reg.host}/app:v1", config=cfg, env=env))
    _ok(run_pyimg(root, "logout", reg.host, config=cfg, env=env))
    assert json.loads(secrets.read_text()) == {}


@pytest.fixture
def token_setup(tmp_path):
    ts = start_token_server(tmp_path, users={"bob": "pw"}, anonymous=True)
    reg = start_registry(tmp_path, token=ts.registry_token_config())
    try:
        yield ts, reg
    finally:
        reg.stop()
        ts.stop()


def test_bearer_token_anonymous_pull(token_setup, tmp_path):
    ts, reg = token_setup
    root = tmp_path / "store"
    cfg = write_pyimg_config(tmp_path)
    d = push_image(reg.host, "team/app", "v1", [busybox_layer()], auth=("bob", "pw"))
    ts.requests.clear()
    _ok(run_pyimg(root, "pull", f"{reg.host}/team/app:v1", config=cfg))
    assert Store(str(root)).resolve(f"{reg.host}/team/app:v1")[0] == d
    assert set(ts.scopes()) == {"repository:team/app:pull"}
    assert all(r["query"]["service"] == [ts.service] for r in ts.requests)
    assert all(r["auth_user"] is None for r in ts.requests)
    # one token for the whole pull, not one per blob
    assert len(ts.requests) == 1


def test_bearer_token_with_credentials(tmp_path):
    ts = start_token_server(tmp_path, users={"bob": "pw"}, anonymous=False)
    reg = start_registry(tmp_path, token=ts.registry_token_config())
    try:
        root = tmp_path / "store"
        cfg = write_pyimg_config(tmp_path)
        push_image(reg.host, "team/app", "v1", [busybox_layer()], auth=("bob", "pw"))
        ref = f"{reg.host}/team/app:v1"
        p = run_pyimg(root, "pull", ref, config=cfg)
        _fail_one_line(p, ref, "token server")
        p = run_pyimg(root, "login", reg.host, "-u", "bob", "--password-stdin", config=cfg,
                      input="bad")
        _fail_one_line(p, "login failed")
        _ok(run_pyimg(root, "login", reg.host, "-u", "bob", "--password-stdin", config=cfg,
                      input="pw"))
        ts.requests.clear()
        _ok(run_pyimg(root, "pull", ref, config=cfg))
        assert {r["auth_user"] for r in ts.requests} == {"bob"}
        assert ts.requests[0]["query"]["account"] == ["bob"]
        assert set(ts.scopes()) == {"repository:team/app:pull"}
    finally:
        reg.stop()
        ts.stop()


def test_docker_io_defaults_through_local_token_server(token_setup, tmp_path):
    """`pyimg pull busybox` goes to docker.io's endpoint (overridden to a local
    registry), asks the token realm (overridden too) for exactly
    repository:library/busybox:pull, and stores docker.io/library/busybox:latest."""
    ts, reg = token_setup
    root = tmp_path / "store"
    d = push_image(reg.host, "library/busybox", "latest", [busybox_layer()], media="docker",
                   auth=("bob", "pw"))
    override_realm = ts.realm.replace("/token", "/override-token")
    cfg = write_pyimg_config(tmp_path, dockerio_endpoint=reg.url,
                             dockerio_token_realm=override_realm)
    ts.requests.clear()
    p = _ok(run_pyimg(root, "pull", "busybox", config=cfg))
    assert "Status: Downloaded newer image for docker.io/library/busybox:latest" in p.stdout
    assert [r["path"] for r in ts.requests] == ["/override-token"]
    assert ts.scopes() == ["repository:library/busybox:pull"]
    assert ts.requests[0]["query"]["service"] == [ts.service]
    store = Store(str(root))
    assert store.resolve("busybox")[0] == d
    assert store.resolve("docker.io/library/busybox:latest")[0] == d
    rows = json.loads(_ok(run_pyimg(root, "images", "--format", "json", config=cfg)).stdout)
    assert rows[0]["repository"] == "docker.io/library/busybox"

    # Docker Hub credentials live under https://index.docker.io/v1/
    _ok(run_pyimg(root, "login", "-u", "bob", "--password-stdin", config=cfg, input="pw"))
    saved = json.loads((tmp_path / "docker-config" / "config.json").read_text())
    assert list(saved["auths"]) == ["https://index.docker.io/v1/"]
    ts.requests.clear()
    _ok(run_pyimg(root, "pull", "busybox:latest", config=cfg))
    assert {r["auth_user"] for r in ts.requests} == {"bob"}


def test_authorization_not_forwarded_on_redirect(tmp_path):
    """Blob GETs redirected to another host (as registries do to storage) must
    not carry the registry's Authorization header."""
    auth_reg = start_registry(tmp_path, htpasswd={"alice": "s3cret"})
    storage_reg = start_registry(tmp_path)
    front = FaultProxy(auth_reg.host)
    storage = FaultProxy(storage_reg.host)
    try:
        layers = [busybox_layer()]
        d = push_image(auth_reg.host, "app", "v1", layers, auth=("alice", "s3cret"))
        assert push_image(storage_reg.host, "app", "v1", layers) == d
        front.add_rule("/blobs/sha256:", "redirect", times=None, to=storage.host)
        root = tmp_path / "store"
        cfg = write_pyimg_config(tmp_path)
        _ok(run_pyimg(root, "login", front.host, "-u", "alice", "--password-stdin",
                      config=cfg, input="s3cret"))
        _ok(run_pyimg(root, "pull", f"{front.host}/app:v1", config=cfg))
        fronted = front.requests("GET", "/blobs/")
        assert fronted and all(r["headers"].get("Authorization", "").startswith("Basic ")
                               for r in fronted)
        stored = storage.requests("GET", "/blobs/")
        assert len(stored) == 2  # config + layer
        assert all("Authorization" not in r["headers"] for r in stored)
    finally:
        front.stop()
        storage.stop()
        auth_reg.stop()
        storage_reg.stop()


def test_push_with_bearer_token_credentials(token_setup, tmp_path):
    ts, reg = token_setup
    root = tmp_path / "store"
    cfg = write_pyimg_config(tmp_path)
    d = push_image(reg.host, "team/app", "v1", [busybox_layer()], auth=("bob", "pw"))
    _ok(run_pyimg(root, "pull", f"{reg.host}/team/app:v1", config=cfg))
    _ok(run_pyimg(root, "tag", f"{reg.host}/team/app:v1", f"{reg.host}/team/copy:v9", config=cfg))
    # anonymous tokens carry pull only: the push is refused, in one line
    p = run_pyimg(root, "push", f"{reg.host}/team/copy:v9", config=cfg)
    _fail_one_line(p, f"{reg.host}/team/copy:v9")
    _ok(run_pyimg(root, "login", reg.host, "-u", "bob", "--password-stdin", config=cfg,
                  input="pw"))
    ts.requests.clear()
    _ok(run_pyimg(root, "push", f"{reg.host}/team/copy:v9", config=cfg))
    assert "repository:team/copy:pull,push" in ts.scopes()
    assert {r["auth_user"] for r in ts.requests} == {"bob"}
    import subprocess
    p = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", "bob:pw",
                        f"docker://{reg.host}/team/copy:v9"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Digest"] == d
