"""pyimg login / logout / search.

login checks the credentials against the registry (GET /v2/, answering its
challenge with them) before storing them in Docker's config.json, so a
wrong password is reported and nothing is written.
"""
from __future__ import annotations

import json
import urllib.parse

from imagetool.config import Config
from imagetool.credentials import Credentials, server_key
from imagetool.errors import AuthError, CredentialsError, NotFoundError, RegistryError, UsageError
from imagetool.registry import RegistryClient


class _Given:
    """Credentials source holding just the pair being tried."""

    def __init__(self, user, password):
        self.pair = (user, password)

    def get(self, registry):
        return self.pair


def _registry_name(registry: str) -> str:
    r = registry.strip()
    if "://" in r:
        r = urllib.parse.urlsplit(r).netloc
    r = r.rstrip("/")
    if server_key(r) == server_key("docker.io"):
        return "docker.io"
    return r


def login(registry: str, username: str, password: str, config: Config) -> str:
    """Verify and store credentials; returns the message to print."""
    reg = _registry_name(registry)
    if not username or not password:
        raise UsageError("username and password must not be empty")
    client = RegistryClient(reg, config, _Given(username, password))
    # mirrors are not where credentials are checked
    client.endpoints = client.endpoints[-1:]
    try:
        client.ping()
    except AuthError as e:
        raise AuthError(f"login failed: {e}") from None
    Credentials(config.docker_config).store(reg, username, password)
    return "Login Succeeded"


def logout(registry: str, config: Config) -> str:
    reg = _registry_name(registry)
    if not Credentials(config.docker_config).erase(reg):
        raise CredentialsError(f"not logged in to {reg}")
    return f"Removing login credentials for {server_key(reg)}"


def search(term: str, registry: str, config: Config, limit: int = 25) -> list[str]:
    """Lines to print: Docker Hub's search API for docker.io, otherwise the
    registry's /v2/_catalog filtered by term, with each repository's tags."""
    reg = _registry_name(registry)
    creds = Credentials(config.docker_config)
    if reg == "docker.io":
        base = config.dockerio_index.rstrip("/")
        client = RegistryClient(reg, config, creds)
        url = f"{base}/v1/search?" + urllib.parse.urlencode({"q": term, "n": limit})
        host = urllib.parse.urlsplit(base).netloc
        with client._raw("GET", url, {"Accept": "application/json"},
                         config.is_insecure(host)) as r:
            body = r.read(8 << 20)
            if r.status != 200:
                raise RegistryError(f"{host} search API answered HTTP {r.status}")
        try:
            results = json.loads(body).get("results") or []
        except (ValueError, AttributeError):
            raise RegistryError(f"{host} search API returned invalid JSON") from None
        rows = [("NAME", "DESCRIPTION", "STARS", "OFFICIAL")]
        for it in results[:limit]:
            desc = (it.get("description") or "").replace("\n", " ")
            if len(desc) > 45:
                desc = desc[:44] + "…"
            rows.append((it.get("name", ""), desc, str(it.get("star_count", 0)),
                         "[OK]" if it.get("is_official") else ""))
        return _table(rows)
    client = RegistryClient(reg, config, creds)
    client.endpoints = client.endpoints[-1:]
    try:
        repos = client.catalog()
    except NotFoundError:
        raise RegistryError(f"registry {reg} does not support search (no /v2/_catalog)") from None
    except AuthError as e:
        raise RegistryError(f"registry {reg} refused the catalog: {e}") from None
    hits = [r for r in repos if term.lower() in r.lower()][:limit]
    rows = [("NAME", "TAGS")]
    for name in hits:
        try:
            tags = client.tags(name)
        except RegistryError:
            tags = []
        rows.append((f"{reg}/{name}", ", ".join(sorted(tags))))
    return _table(rows)


def _table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["   ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
