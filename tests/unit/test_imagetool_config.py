"""Settings file, insecure-registry rules, Docker credentials file."""
import base64
import json
import os
import stat

import pytest

from imagetool.config import Config, ConfigError, parse_seconds, parse_size
from imagetool.credentials import DOCKER_HUB_KEY, Credentials


def test_config_defaults_and_keys(tmp_path, monkeypatch):
    # the default file missing is fine: all defaults
    monkeypatch.setenv("PYIMG_CONFIG", str(tmp_path / "absent.json"))
    d = Config.load(None)
    assert d.dockerio_endpoint == "https://registry-1.docker.io"
    assert d.certs_dir == "/etc/docker/certs.d" and d.mirrors_for("docker.io") == []
    # an explicitly named file that is missing is an error
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(str(tmp_path / "absent.json"))
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"registry-mirrors": ["https://m1/", "http://m2"],
                             "mirrors": {"r.example:5000": ["http://m3"]},
                             "insecure-registries": ["10.1.0.0/16", "reg.local:5000"],
                             "dockerio_endpoint": "http://127.0.0.1:1",
                             "max-concurrent-downloads": 5}))
    c = Config.load(str(p))
    assert c.mirrors_for("docker.io") == ["https://m1", "http://m2"]
    assert c.mirrors_for("r.example:5000") == ["http://m3"]
    assert c.mirrors_for("other") == []
    assert c.max_concurrent_downloads == 5
    assert c.dockerio_endpoint == "http://127.0.0.1:1"
    for h in ("127.0.0.1:5000", "127.9.9.9", "localhost:5000", "[::1]:5000", "10.1.2.3:443",
              "reg.local:5000"):
        assert c.is_insecure(h), h
    for h in ("10.2.0.1:5000", "reg.local:5001", "registry-1.docker.io", "example.com"):
        assert not c.is_insecure(h), h
    p.write_text("{broken")
    with pytest.raises(ConfigError, match=str(p)):
        Config.load(str(p))


def test_credentials_file_roundtrip(tmp_path):
    c = Credentials(str(tmp_path / "d"))
    assert c.get("docker.io") is None
    c.store("docker.io", "me", "pw1")
    c.store("reg.example:5000", "you", "pw:with:colons")
    data = json.loads((tmp_path / "d" / "config.json").read_text())
    assert set(data["auths"]) == {DOCKER_HUB_KEY, "reg.example:5000"}
    assert base64.b64decode(data["auths"][DOCKER_HUB_KEY]["auth"]) == b"me:pw1"
    assert stat.S_IMODE(os.stat(tmp_path / "d" / "config.json").st_mode) == 0o600
    assert c.get("index.docker.io") == ("me", "pw1")
    assert c.get("reg.example:5000") == ("you", "pw:with:colons")
    assert c.erase("docker.io") and c.get("docker.io") is None
    assert not c.erase("docker.io")


def test_credentials_written_by_docker_cli_are_read(tmp_path, monkeypatch):
    d = tmp_path / "dockercfg"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"auths": {
        "https://reg.example:5000": {"auth": base64.b64encode(b"u:p").decode()},
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:secret").decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    c = Credentials()
    assert c.get("reg.example:5000") == ("u", "p")
    assert c.get("docker.io") == ("hub", "secret")
    assert c.get("elsewhere") is None


def test_credential_helper_missing_is_one_line_error(tmp_path, monkeypatch):
    d = tmp_path / "dc"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"credHelpers": {"reg.example": "nosuchhelper"}}))
    monkeypatch.setenv("PATH", str(tmp_path))
    from imagetool.credentials import CredentialsError
    with pytest.raises(CredentialsError, match="docker-credential-nosuchhelper"):
        Credentials(str(d)).get("reg.example")
    assert Credentials(str(d)).get("other.example") is None


def test_cred_helpers_per_registry_win_over_auths(tmp_path, monkeypatch):
    import sys
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-unit"
    helper.write_text(f"#!{sys.executable}\n"
                      "import json, sys\n"
                      "url = sys.stdin.read().strip()\n"
                      "if sys.argv[1] == 'get' and url == 'reg.example:5000':\n"
                      "    print(json.dumps({'Username': 'helper-user', 'Secret': 'helper-pw'}))\n"
                      "else:\n"
                      "    print('credentials not found in native keychain'); sys.exit(1)\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    d = tmp_path / "dc"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "credHelpers": {"reg.example:5000": "unit"},
        "auths": {"reg.example:5000": {"auth": base64.b64encode(b"file:pw").decode()},
                  "other.example": {"auth": base64.b64encode(b"o:p").decode()}}}))
    c = Credentials(str(d))
    assert c.get("reg.example:5000") == ("helper-user", "helper-pw")
    assert c.get("other.example") == ("o", "p")  # no helper for it: the file


def test_config_defaults_are_per_instance_and_names_are_checked():
    a, b = Config(), Config()
    a.registry_mirrors.append("https://m.example")
    a.mirrors["x"] = ["y"]
    assert b.registry_mirrors == [] and b.mirrors == {}
    assert Config(retries=2).retries == 2 and Config().retries == 5
    assert Config(timeout=5) == Config(timeout=5) != Config()
    with pytest.raises(TypeError, match="unknown setting.*retry"):
        Config(retry=3)


# ---- download bounds ------------------------------------------------------------

@pytest.mark.parametrize("value, n", [
    (4096, 4096), ("4096", 4096), ("100kB", 100_000), ("100k", 100_000), ("1MB", 10 ** 6),
    ("1 GB", 10 ** 9), ("1TB", 10 ** 12), ("1KiB", 1024), ("1MiB", 1 << 20),
    ("1.5GiB", 3 << 29), ("2gib", 2 << 30), ("1000000000000", 10 ** 12),
    (10 ** 12, 10 ** 12),
])
def test_parse_size(value, n):
    assert parse_size(value) == n


@pytest.mark.parametrize("value", ["lots", "-5", "5 XB", "1.5.5", "", "MB", 0, "0", -1,
                                   True, None, 1.5, [1]])
def test_parse_size_refuses(value):
    with pytest.raises(ValueError):
        parse_size(value)


@pytest.mark.parametrize("value, t", [(30, 30.0), ("0.5", 0.5), (0, 0.0), ("0", 0.0)])
def test_parse_seconds(value, t):
    assert parse_seconds(value) == t


@pytest.mark.parametrize("value", ["soon", -1, "-0.1", "nan", "inf", True, None, [30]])
def test_parse_seconds_refuses(value):
    with pytest.raises(ValueError):
        parse_seconds(value)


def _load(tmp_path, settings):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(settings))
    return Config.load(str(p))


def test_bounds_config_keys(tmp_path):
    d = _load(tmp_path, {})
    assert d.download_progress_timeout == 30.0
    assert d.max_layer_size is None
    assert d.max_manifest_bytes == 4 * 1024 * 1024
    c = _load(tmp_path, {"download-progress-timeout": 2.5, "max-layer-size": "2GiB",
                         "max-download-attempts": 7})
    assert c.download_progress_timeout == 2.5
    assert c.max_layer_size == 2 << 30
    assert c.retries == 7
    assert _load(tmp_path, {"max-layer-size": None}).max_layer_size is None
    assert _load(tmp_path, {"max-download-attempts": 3, "retries": 3}).retries == 3


@pytest.mark.parametrize("settings, fragment", [
    ({"max-layer-size": "lots"}, "max-layer-size 'lots'"),
    ({"max-layer-size": 0}, "max-layer-size 0"),
    ({"download-progress-timeout": "soon"}, "download-progress-timeout 'soon'"),
    ({"download-progress-timeout": -1}, "download-progress-timeout -1"),
    ({"max-download-attempts": 0}, "max-download-attempts"),
    ({"max-download-attempts": "5"}, "max-download-attempts"),
    ({"max-download-attempts": 3, "retries": 4}, "disagree"),
])
def test_bad_bounds_settings(tmp_path, settings, fragment):
    with pytest.raises(ConfigError) as ei:
        _load(tmp_path, settings)
    msg = str(ei.value)
    assert fragment in msg and str(tmp_path / "c.json") in msg and "\n" not in msg


@pytest.mark.parametrize("settings, key", [
    ({"retries": "abc"}, "retries"),
    ({"max_concurrent_downloads": [3]}, "max_concurrent_downloads"),
    ({"max-concurrent-downloads": "many"}, "max-concurrent-downloads"),
    ({"timeout": "long"}, "timeout"),
    ({"timeout": 0}, "timeout"),
    ({"retry_backoff": "short"}, "retry_backoff"),
    ({"max_manifest_bytes": "4M"}, "max_manifest_bytes"),
])
def test_bad_numeric_settings_are_config_errors(tmp_path, settings, key):
    with pytest.raises(ConfigError) as ei:
        _load(tmp_path, settings)
    msg = str(ei.value)
    assert key in msg and str(tmp_path / "c.json") in msg and "Error" not in msg
