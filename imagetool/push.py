"""pyimg push: upload a stored image to the registry its reference names.

Blobs the registry already has (HEAD) are not uploaded again; the manifest
goes last, so the registry never holds a manifest whose blobs are missing.
An image stored as an index (from `pyimg load` of an OCI archive) is pushed
with every child manifest the store holds; a child that is absent makes the
push fail before anything is written to the registry's tags.

Errors are those of the step that failed (imagetool.errors), named
"push REFERENCE: ...".
"""
from __future__ import annotations

import sys

from imagetool import reference as refmod
from imagetool.errors import PyimgError
from imagetool.config import Config
from imagetool.credentials import Credentials
from imagetool.registry import RegistryClient
from imagetool.store import INDEX_TYPES, Store, StoreError


def push_image(ref: str, *, root: str, config_path: str | None = None, out=None,
               quiet: bool = False) -> str:
    """Push ref from the store at root; returns the pushed manifest's digest."""

    out = out if out is not None else sys.stdout
    r = refmod.parse(ref)
    full = str(r)
    try:
        cfg = Config.load(config_path)
        store = Store(root)
        desc = store.descriptor(ref)
        client = RegistryClient(r.registry, cfg, Credentials(cfg.docker_config))
        client.endpoints = client.endpoints[-1:]  # never push to a mirror

        def say(s):
            if not quiet:
                out.write(s + "\n")
                out.flush()

        say(f"The push refers to repository [{r.name}]")

        def push_manifest_blobs(mdigest: str) -> tuple[bytes, dict]:
            body = store.read_blob(mdigest)
            m = store.read_json(mdigest)
            if m.get("mediaType") in INDEX_TYPES or "manifests" in m:
                for c in m.get("manifests", []):
                    if not store.has_blob(c["digest"]):
                        raise StoreError(f"manifest {c['digest']} of the index is not in the "
                                         "store (only some platforms were pulled)")
                for c in m.get("manifests", []):
                    cbody, cm = push_manifest_blobs(c["digest"])
                    client.put_manifest(r.repository, c["digest"], cbody,
                                        cm.get("mediaType") or c.get("mediaType"))
                return body, m
            blobs = list(m.get("layers", [])) + [m["config"]]
            for b in blobs:
                if not store.has_blob(b["digest"], b["size"]):
                    raise StoreError(f"blob {b['digest']} is not in the store")
            for b in blobs:
                ident = b["digest"][7:19]
                if client.blob_exists(r.repository, b["digest"]):
                    if b is not m["config"]:
                        say(f"{ident}: Layer already exists")
                    continue
                if b is not m["config"]:
                    say(f"{ident}: Preparing")
                client.upload_blob(r.repository, b["digest"], b["size"],
                                   store.blob_path(b["digest"]))
                if b is not m["config"]:
                    say(f"{ident}: Pushed")
            return body, m

        body, m = push_manifest_blobs(desc["digest"])
        mt = m.get("mediaType") or desc.get("mediaType")
        digest = client.put_manifest(r.repository, r.tag or desc["digest"], body, mt)
        say(f"{r.tag or r.digest}: digest: {digest} size: {len(body)}")
        return digest
    except PyimgError as e:
        raise e.within(f"push {full}")
