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
  "max_concurrent_downloads": 3
  "retries": 5            attempts per request on transient errors
  "retry_backoff": 0.5    seconds before the first retry (doubles, max 8 s)
  "timeout": 60           socket timeout in seconds
  "max_manifest_bytes": 4194304
"""
from __future__ import annotations

import json
import os

DEFAULT_CONFIG_PATH = "/etc/pyimg/config.json"
DEFAULT_ROOT = "/var/lib/pyimg"


class ConfigError(Exception):
    pass


class Config:
    """pyimg's settings (the keys above, with - as _). A plain class, not a
    dataclass: dataclasses imports inspect, ~5 ms on every pull."""

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
    def load(cls, path: str | None = None) -> "Config":
        """Load path (default /etc/pyimg/config.json; a missing default file is
        fine, a missing explicit file is an error)."""
        explicit = path is not None
        path = path or os.environ.get("PYIMG_CONFIG") or DEFAULT_CONFIG_PATH
        try:
            with open(path) as f:
                raw = json.load(f)
        except FileNotFoundError:
            if explicit:
                raise ConfigError(f"config file {path} does not exist") from None
            return cls(path=None)
        except (OSError, ValueError) as e:
            raise ConfigError(f"config file {path}: {e}") from None
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
        c.max_concurrent_downloads = max(1, int(c.max_concurrent_downloads))
        c.retries = max(1, int(c.retries))
        return c

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
