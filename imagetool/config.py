"""pyimg settings, read from one JSON file (default /etc/pyimg/config.json).

Every key is optional; a missing file means all defaults. Keys:

  "registry-mirrors": ["https://mirror.example"]     as Docker's daemon.json:
                          mirrors tried in order for docker.io, then docker.io
  "mirrors": {"HOST[:PORT]": ["http://mirror:5000", ...]}
                          per-registry mirrors (same fallback rule)
  "insecure-registries": ["HOST:PORT", "10.0.0.0/8"]
                          try HTTPS without verification, then plain HTTP.
                          127.0.0.0/8, ::1 and localhost are insecure by
                          default, as in Docker.
  "dockerio_endpoint": "https://registry-1.docker.io"
                          where docker.io references are pulled from
  "dockerio_token_realm": null
                          if set, replaces the realm of docker.io's bearer
                          challenge (tests stand a local token server in)
  "dockerio_index": "https://index.docker.io"
                          Docker Hub search API base (pyimg search)
  "certs_dir": "/etc/docker/certs.d"
                          per-registry TLS: certs.d/HOST:PORT/{ca.crt,
                          client.cert, client.key}, Docker's layout
  "docker_config": null   directory holding config.json with credentials;
                          default $DOCKER_CONFIG, else ~/.docker
  "max_concurrent_downloads": 3       (also "max-concurrent-downloads")
  "retries": 5            attempts per request on transient errors; Docker's
                          name "max-download-attempts" is the same setting
  "retry_backoff": 0.5    seconds before the first retry (doubles, max 8 s)
  "timeout": 60           socket timeout in seconds (connecting, and every
                          single read or write)
  "max_manifest_bytes": 4194304
                          cap on a manifest or index read from a registry,
                          4 MiB as the distribution registry (which refuses
                          to store larger ones) and containerd use
  "download-progress-timeout": 30
                          seconds a manifest or blob download may go without
                          progress before it is abandoned and retried (a blob
                          resumes where it stopped); 0 turns the deadline off.
                          Progress is 16 KiB arriving (or the response headers,
                          for the wait before them), so a registry dripping a
                          byte now and then does not count as alive. 30 s:
                          containerd's CRI has a whole-pull deadline of this
                          kind (image_pull_progress_timeout, 5 min in
                          containerd 2, checked every 10 s, no retry) and
                          Docker none beyond its 30 s dial timeout; here the
                          deadline is per connection and followed by retries,
                          so a stalled connection can be given up on sooner
                          at little cost.
  "max-layer-size": null  if set, an image with a layer whose descriptor
                          declares more is refused before anything is
                          downloaded: bytes, or a string "500MB", "2GiB"
                          (kB, MB, GB, TB are powers of 1000; KiB, MiB, GiB,
                          TiB of 1024)
"""
from __future__ import annotations

import json
import os
import re

from imagetool.errors import ConfigError, os_message

DOCKER_DAEMON_JSON = "/etc/docker/daemon.json"
DEFAULT_CONFIG_PATH = "/etc/pyimg/config.json"
DEFAULT_ROOT = "/var/lib/pyimg"


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2,
          "g": 1000 ** 3, "gb": 1000 ** 3, "t": 1000 ** 4, "tb": 1000 ** 4,
          "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}
SIZE_HELP = "bytes, or a number with kB, MB, GB, TB, KiB, MiB, GiB or TiB"


def parse_size(value) -> int:
    """A byte count from an int or a string such as "500MB", "1.5GiB", "4096"
    (decimal prefixes are powers of 1000, binary ones of 1024; k, M, G, T
    without B mean the decimal ones, as docker's human sizes do). Must be
    positive. Raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"not a size ({SIZE_HELP})")
    if isinstance(value, int):
        n = value
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
        unit = _UNITS.get(m.group(2).lower()) if m else None
        if unit is None:
            raise ValueError(f"not a size ({SIZE_HELP})")
        num = m.group(1)
        # exact for integers, so "1000000000000" stays exact
        n = int(num) * unit if "." not in num else int(float(num) * unit)
    if n <= 0:
        raise ValueError("must be more than 0 bytes")
    return n


def parse_seconds(value) -> float:
    """A duration in seconds from a number or a numeric string; 0 is allowed
    (no deadline), negative values, NaN and infinity are not. Raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("not a number of seconds")
    try:
        t = float(value)
    except ValueError:
        raise ValueError("not a number of seconds") from None
    if not (0 <= t < float("inf")):
        raise ValueError("must be 0 (no deadline) or a positive number of seconds")
    return t


class Config:
    """pyimg's settings (the keys above, with - as _). A plain class, not a
    dataclass: dataclasses imports inspect on every pull."""

    _DEFAULTS = {
        "registry_mirrors": list, "mirrors": dict, "insecure_registries": list,
        "dockerio_endpoint": "https://registry-1.docker.io",
        "dockerio_token_realm": None,
        "dockerio_index": "https://index.docker.io",
        "certs_dir": "/etc/docker/certs.d",
        "docker_config": None,
        "max_concurrent_downloads": 3,
        "retries": 5,
        "retry_backoff": 0.5,
        "timeout": 60.0,
        "max_manifest_bytes": 4 * 1024 * 1024,
        "download_progress_timeout": 30.0,
        "max_layer_size": None,
        "path": None,
    }

    def __init__(self, **kw):
        unknown = set(kw) - set(self._DEFAULTS)
        if unknown:
            raise TypeError(f"Config: unknown setting(s) {', '.join(sorted(unknown))}")
        for k, default in self._DEFAULTS.items():
            setattr(self, k, kw[k] if k in kw else default() if callable(default) else default)

    def __repr__(self):
        return "Config(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self._DEFAULTS) + ")"

    def __eq__(self, other):
        return isinstance(other, Config) and all(getattr(self, k) == getattr(other, k) for k in self._DEFAULTS)

    @classmethod
    def _docker_daemon_settings(cls) -> "Config":
        """Without a pyimg settings file, what a Docker user configured for
        dockerd applies: registry-mirrors and insecure-registries from
        /etc/docker/daemon.json (or $PYIMG_DOCKER_DAEMON_JSON). A file that
        is missing or not a JSON object is ignored, as it is not ours."""
        c = cls(path=None)
        path = os.environ.get("PYIMG_DOCKER_DAEMON_JSON") or DOCKER_DAEMON_JSON
        try:
            with open(path, "rb") as f:
                raw = json.loads(f.read().decode())
        except (OSError, ValueError, UnicodeDecodeError):
            return c
        if isinstance(raw, dict):
            mirrors, insecure = raw.get("registry-mirrors"), raw.get("insecure-registries")
            if isinstance(mirrors, list) and all(isinstance(m, str) for m in mirrors):
                c.registry_mirrors = mirrors
            if isinstance(insecure, list) and all(isinstance(m, str) for m in insecure):
                c.insecure_registries = insecure
        return c

    @classmethod
    def load(cls, path: str | None = None) -> "Config":
        """Load path (default /etc/pyimg/config.json; a missing default file is
        fine, a missing explicit file is an error)."""
        explicit = path is not None
        path = path or os.environ.get("PYIMG_CONFIG") or DEFAULT_CONFIG_PATH
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            if explicit:
                raise ConfigError(f"config file {path} does not exist") from None
            return cls._docker_daemon_settings()
        except OSError as e:
            raise ConfigError(os_message(e, f"reading the config file {path}")) from None
        try:
            raw = json.loads(data.decode())
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path}: not UTF-8 text") from None
        except ValueError as e:
            raise ConfigError(f"config file {path}: not valid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path}: top level must be a JSON object")
        c = cls(path=path)
        mapping = {
            "registry-mirrors": "registry_mirrors", "mirrors": "mirrors",
            "insecure-registries": "insecure_registries",
            "dockerio_endpoint": "dockerio_endpoint",
            "dockerio_token_realm": "dockerio_token_realm",
            "dockerio_index": "dockerio_index", "certs_dir": "certs_dir",
            "docker_config": "docker_config",
            "max_concurrent_downloads": "max_concurrent_downloads",
            "max-concurrent-downloads": "max_concurrent_downloads",
            "retries": "retries", "retry_backoff": "retry_backoff", "timeout": "timeout",
            "max_manifest_bytes": "max_manifest_bytes",
        }
        for k, v in raw.items():
            if k in mapping:
                setattr(c, mapping[k], v)
        if not isinstance(c.registry_mirrors, list) or not isinstance(c.mirrors, dict):
            raise ConfigError(f"config file {path}: registry-mirrors must be a list, mirrors an object")
        for attr, conv, ok, what in (
                ("max_concurrent_downloads", int, lambda n: True, "a whole number"),
                ("retries", int, lambda n: True, "a whole number"),
                ("timeout", float, lambda t: 0 < t < float("inf"), "a positive number of seconds"),
                ("retry_backoff", float, lambda t: 0 <= t < float("inf"), "a number of seconds"),
                ("max_manifest_bytes", int, lambda n: n > 0, "a positive number of bytes")):
            v = getattr(c, attr)
            try:
                n = conv(v) if not isinstance(v, bool) else None
            except (TypeError, ValueError):
                n = None
            if n is None or not ok(n):
                key = next((k for k in raw if mapping.get(k) == attr), attr)
                raise ConfigError(f"config file {path}: {key} must be {what}, not {v!r}")
            setattr(c, attr, n)
        # counts below 1 mean 1
        c.max_concurrent_downloads = max(1, c.max_concurrent_downloads)
        c.retries = max(1, c.retries)
        try:
            c._load_bounds(raw)
        except ValueError as e:
            raise ConfigError(f"config file {path}: {e}") from None
        return c

    def _load_bounds(self, raw: dict) -> None:
        """The download bounds in raw (daemon.json-style names); raises
        ValueError naming the key."""
        if "max-download-attempts" in raw:
            v = raw["max-download-attempts"]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"max-download-attempts must be a whole number of at least 1, "
                                 f"not {v!r}")
            if "retries" in raw and raw["retries"] != v:
                raise ValueError(f"max-download-attempts ({v}) and retries ({raw['retries']!r}) "
                                 f"are the same setting and disagree; keep one")
            self.retries = v
        if "download-progress-timeout" in raw:
            try:
                self.download_progress_timeout = parse_seconds(raw["download-progress-timeout"])
            except ValueError as e:
                raise ValueError(f"download-progress-timeout {raw['download-progress-timeout']!r}: "
                                 f"{e}") from None
        if raw.get("max-layer-size") is not None:
            try:
                self.max_layer_size = parse_size(raw["max-layer-size"])
            except ValueError as e:
                raise ValueError(f"max-layer-size {raw['max-layer-size']!r}: {e}") from None

    def mirrors_for(self, registry: str) -> list[str]:
        if registry == "docker.io":
            extra = self.mirrors.get("docker.io", []) + self.mirrors.get("registry-1.docker.io", [])
            return [m.rstrip("/") for m in list(self.registry_mirrors) + extra]
        return [m.rstrip("/") for m in self.mirrors.get(registry, [])]

    def is_insecure(self, hostport: str) -> bool:
        """Docker's rule: listed hosts/CIDRs, plus loopback and localhost."""
        host = hostport
        if host.startswith("["):
            host = host[1:host.find("]")]
        elif host.count(":") == 1:
            host = host.split(":")[0]
        if host == "localhost" or hostport in self.insecure_registries or host in self.insecure_registries:
            return True
        import ipaddress

        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if ip.is_loopback:
            return True
        for entry in self.insecure_registries:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False
