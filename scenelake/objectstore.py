"""The profile's object store as Python sees it (pyarrow's S3 file system): uploads into the landing
zone, listings for checks. Spark reaches the same store through S3A and Trino through its native
S3 file system; all three take the endpoint and region from the settings and the credentials from
the environment (`export_credentials` puts the local cluster's there).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pyarrow import fs

from scenelake.settings import Settings

CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


class ObjectStoreError(Exception):
    """The object store cannot be reached or refused a request; the message names it."""


def credentials_file(settings: Settings) -> Path:
    return settings.state_dir / "cluster" / "credentials.json"


def export_credentials(settings: Settings) -> None:
    """Put the local cluster's object-store keys into this process's environment, where S3A (the
    driver's JVM inherits it), pyarrow and Trino read them; keys already in the environment win."""
    if all(os.environ.get(v) for v in CREDENTIAL_VARIABLES):
        return
    path = credentials_file(settings)
    if path.exists():
        keys = json.loads(path.read_text())
        os.environ.update({v: keys[v] for v in CREDENTIAL_VARIABLES})


# How S3A, the AWS SDK and pyarrow say that the store did not answer (not: refused a request).
UNREACHABLE = re.compile(r"Connection refused|Unable to execute HTTP request|UnknownHostException|"
                         r"connect timed out|ConnectException|Failed to connect|Couldn't connect to server")


def unreachable(settings: Settings, error: BaseException) -> str | None:
    """When `error` says the profile's object store could not be reached: a message that names the
    store and says what to do; otherwise None."""
    if not any(r.startswith("s3a://") for r in (settings.lake_root, settings.landing_root)):
        return None
    found = UNREACHABLE.search(str(error))
    if found is None:
        return None
    store = settings.s3_endpoint or f"AWS S3 ({settings.s3_region})"
    hint = "`scenelake cluster status` says whether it runs" if settings.env == "cluster-local" else \
        "check the endpoint and the network"
    return (f"the object store at {store} cannot be reached ({found.group(0)}): {hint}. Nothing half-done is "
            "published: rerun the job once the store is back and it carries on from the last commit")


def split(uri: str) -> tuple[str, str]:
    """s3a://bucket/key/... -> ("bucket", "key/...")."""
    scheme, _, rest = uri.partition("://")
    if scheme not in ("s3", "s3a") or not rest:
        raise ObjectStoreError(f"{uri} is not an s3a:// location")
    bucket, _, key = rest.partition("/")
    return bucket, key.strip("/")


def filesystem(settings: Settings) -> fs.S3FileSystem:
    export_credentials(settings)
    options: dict[str, object] = {"region": settings.s3_region}
    if settings.s3_endpoint:
        scheme, _, host = settings.s3_endpoint.partition("://")
        options.update(endpoint_override=host, scheme=scheme, force_virtual_addressing=False)
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        options.update(access_key=key, secret_key=secret)
    return fs.S3FileSystem(**options)  # type: ignore[arg-type]


def upload(settings: Settings, source: Path, uri: str) -> int:
    """Copy every file under the local folder `source` to the s3a:// folder `uri`, keeping the layout;
    returns how many files were copied."""
    bucket, key = split(uri)
    target = f"{bucket}/{key}".rstrip("/")
    files = sorted(p for p in source.rglob("*") if p.is_file())
    store = filesystem(settings)
    try:
        fs.copy_files(str(source), target, source_filesystem=fs.LocalFileSystem(), destination_filesystem=store)
    except OSError as exc:
        raise ObjectStoreError(f"uploading {source} to {uri} through {settings.s3_endpoint or 'AWS S3'} "
                               f"failed: {exc}") from exc
    return len(files)


def listing(settings: Settings, uri: str) -> list[str]:
    """Every object under the s3a:// folder `uri`, as keys relative to it."""
    return sorted(sizes(settings, uri))


def sizes(settings: Settings, uri: str) -> dict[str, int]:
    """Every object under the s3a:// folder `uri` (keys relative to it) and its size in bytes."""
    bucket, key = split(uri)
    prefix = f"{bucket}/{key}".rstrip("/")
    try:
        infos = filesystem(settings).get_file_info(fs.FileSelector(prefix, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise ObjectStoreError(f"listing {uri} through {settings.s3_endpoint or 'AWS S3'} failed: {exc}") from exc
    return {i.path.removeprefix(prefix + "/"): int(i.size) for i in infos if i.type == fs.FileType.File}
