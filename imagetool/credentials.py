"""Registry credentials in Docker's client config ($DOCKER_CONFIG/config.json
or ~/.docker/config.json), read and written the way the docker CLI does:

  {"auths": {"HOST[:PORT]": {"auth": base64("user:password")}},
   "credsStore": "NAME",            # docker-credential-NAME for every registry
   "credHelpers": {"HOST": "NAME"}}  # per-registry helper, wins over credsStore

Docker Hub is stored under the key "https://index.docker.io/v1/". Helper
programs speak the docker-credential protocol: `get` (server URL on stdin,
{"Username","Secret"} on stdout), `store` ({"ServerURL","Username","Secret"}
on stdin), `erase` (server URL on stdin).

config.json is rewritten atomically (temp file, fsync, rename, mode 0600),
keeping every key this module does not know about.
"""
from __future__ import annotations

import base64
import json
import os

from imagetool.errors import CredentialsError, os_message

DOCKER_HUB_KEY = "https://index.docker.io/v1/"


def config_dir(override: str | None = None) -> str:
    if override:
        return override
    if os.environ.get("DOCKER_CONFIG"):
        return os.environ["DOCKER_CONFIG"]
    return os.path.join(os.path.expanduser("~"), ".docker")


def server_key(registry: str) -> str:
    """The config.json key for a registry host (docker.io -> index URL)."""
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY):
        return DOCKER_HUB_KEY
    return registry


def _candidates(registry: str) -> list[str]:
    key = server_key(registry)
    if key == DOCKER_HUB_KEY:
        return [DOCKER_HUB_KEY, "index.docker.io", "docker.io", "registry-1.docker.io",
                "https://index.docker.io/v1", "https://registry-1.docker.io"]
    return [key, f"https://{key}", f"http://{key}", f"https://{key}/v1/", f"https://{key}/v2/"]


class Credentials:
    def __init__(self, directory: str | None = None):
        self.dir = config_dir(directory)
        self.path = os.path.join(self.dir, "config.json")

    def _load(self) -> dict:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise CredentialsError(os_message(e, f"reading {self.path}")) from None
        except ValueError:
            raise CredentialsError(f"{self.path} is not valid JSON") from None
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict) -> None:
        from imagetool.store import atomic_write
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            atomic_write(self.path, json.dumps(data, indent="\t").encode() + b"\n", mode=0o600)
        except OSError as e:
            raise CredentialsError(os_message(e, f"writing {self.path}")) from None

    def _helper_for(self, data: dict, registry: str) -> str | None:
        helpers = data.get("credHelpers") or {}
        for k in _candidates(registry):
            if k in helpers:
                return helpers[k]
        return data.get("credsStore") or None

    @staticmethod
    def _run_helper(name: str, action: str, payload: str) -> str:
        import subprocess  # only credential helpers need it

        prog = f"docker-credential-{name}"
        try:
            p = subprocess.run([prog, action], input=payload.encode(), capture_output=True,
                               timeout=60)
        except FileNotFoundError:
            raise CredentialsError(f"credential helper {prog} not found in PATH") from None
        except OSError as e:
            raise CredentialsError(os_message(e, f"running the credential helper {prog}")) from None
        except subprocess.TimeoutExpired:
            raise CredentialsError(f"credential helper {prog} {action} timed out") from None
        out = p.stdout.decode(errors="replace").strip()
        if p.returncode != 0:
            if action == "get" and "credentials not found" in out.lower():
                return ""
            err = (out or p.stderr.decode(errors="replace")).strip().splitlines()
            raise CredentialsError(f"credential helper {prog} {action} failed: "
                                   f"{err[0] if err else 'exit ' + str(p.returncode)}")
        return out

    def get(self, registry: str) -> tuple[str, str] | None:
        """(username, password-or-identity-token) for registry, or None."""
        data = self._load()
        helper = self._helper_for(data, registry)
        if helper:
            out = self._run_helper(helper, "get", server_key(registry))
            if out:
                try:
                    d = json.loads(out)
                except ValueError:
                    raise CredentialsError(f"credential helper docker-credential-{helper} "
                                           "returned invalid JSON") from None
                if d.get("Username") or d.get("Secret"):
                    return d.get("Username", ""), d.get("Secret", "")
        auths = data.get("auths") or {}
        for k in _candidates(registry):
            entry = auths.get(k)
            if not entry:
                continue
            if entry.get("auth"):
                try:
                    user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
                except Exception:
                    raise CredentialsError(f"{self.path}: bad auth entry for {k}") from None
                return user, pw
            if entry.get("username"):
                return entry["username"], entry.get("password", "")
            if entry.get("identitytoken"):
                return "<token>", entry["identitytoken"]
        return None

    def store(self, registry: str, username: str, password: str) -> None:
        data = self._load()
        key = server_key(registry)
        helper = self._helper_for(data, registry)
        if helper:
            self._run_helper(helper, "store", json.dumps(
                {"ServerURL": key, "Username": username, "Secret": password}))
            data.setdefault("auths", {})[key] = {}
        else:
            auth = base64.b64encode(f"{username}:{password}".encode()).decode()
            data.setdefault("auths", {})[key] = {"auth": auth}
        self._save(data)

    def erase(self, registry: str) -> bool:
        """Forget credentials for registry; True if something was removed."""
        data = self._load()
        removed = False
        helper = self._helper_for(data, registry)
        if helper:
            try:
                self._run_helper(helper, "erase", server_key(registry))
                removed = True
            except CredentialsError:
                pass
        auths = data.get("auths") or {}
        for k in _candidates(registry):
            if k in auths:
                del auths[k]
                removed = True
        if removed:
            self._save(data)
        return removed
