"""Media storage behind one interface, chosen by `MEDIA_STORAGE`.

- `local` (the embedded default): a folder (`MEDIA_ROOT`); the API serves the bytes itself.
- `s3`: an S3-compatible bucket through boto3; clients fetch the bytes from the bucket with
  a presigned GET, which answers Range requests itself.

Keys are the same on both, `videos/<account>/<job>.mp4` and `posters/<account>/<job>.jpg`;
on S3 they sit under an optional `S3_PREFIX`. Credentials come from boto3's standard chain
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, a web identity token, an instance role).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

import boto3
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# SigV4 presigned URLs live at most seven days (an S3 limit).
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
# Presigned URLs are signed as of the start of the hour, so every read of a job within the
# hour, on any API process, gets the same URL: clients agree and caches can keep the video.
PRESIGN_TIME_STEP = 3600
_HOUR_SIGNER = "naive-s3v4-hour-query"

# Short connect and read timeouts and few retries: ingest has its own retries with backoff,
# and a request that waits on a dead endpoint must not hold a worker for minutes.
CLIENT_CONFIG = Config(
    signature_version="s3v4",
    connect_timeout=5,
    read_timeout=60,
    retries={"max_attempts": 3, "mode": "standard"},
)


class MediaStorage(Protocol):
    """Where ingested videos and posters live."""

    def put(self, key: str, source_path: Path, content_type: str) -> None:
        """Store the file under `key`; readers see the old object or the whole new one."""
        ...

    def exists(self, key: str) -> bool: ...

    def local_path(self, key: str) -> Path | None:
        """The file holding `key` on this machine, for the API to send itself; None when the
        object lives elsewhere (then `presigned_url` gives a URL for it)."""
        ...

    def presigned_url(
        self, key: str, *, filename: str | None, content_type: str, expires: int
    ) -> str | None:
        """A GET URL that needs no other credential, valid for about `expires` seconds;
        None when the storage cannot sign one (the API's own signed route serves it)."""
        ...

    def free_bytes(self) -> int | None:
        """Room left for new media (a full disk fails every ingest); None when the storage
        does not say (a bucket) or cannot be read."""
        ...


def _check_key(key: str) -> str:
    """Keys are relative paths without `..`: the same rule on every backend."""
    parts = PurePosixPath(key).parts
    if not parts or key.startswith("/") or ".." in parts or "\\" in key:
        raise ValueError(f"invalid storage key: {key!r}")
    return key


class LocalStorage:
    """A folder on this machine (or a volume every API and worker process mounts)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        """The file for a key; keys never leave the root."""
        path = (self.root / _check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key escapes the media root: {key!r}")
        return path

    def put(self, key: str, source_path: Path, content_type: str) -> None:
        # A temporary file in the target folder, then a rename: atomic on one filesystem.
        # A failed copy (a full disk fails a write or the close) leaves no temporary file.
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=target.parent, delete=False)  # noqa: SIM115
        try:
            with handle, source_path.open("rb") as src:
                shutil.copyfileobj(src, handle)
            os.replace(handle.name, target)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(handle.name)
            raise

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def local_path(self, key: str) -> Path:
        return self.path(key)

    def presigned_url(
        self, key: str, *, filename: str | None, content_type: str, expires: int
    ) -> str | None:
        return None

    def free_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self.root).free
        except OSError:  # not there yet, or unreadable: nothing to say
            return None


class _HourQueryAuth(botocore.auth.S3SigV4QueryAuth):
    """SigV4 query signing as of the start of the current hour, not of this second.

    `add_auth` stamps the request with the current time and then calls this method before
    it signs anything; every later step reads the stamp from the request's context."""

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        hour = int(time.time()) // PRESIGN_TIME_STEP * PRESIGN_TIME_STEP
        stamp = datetime.fromtimestamp(hour, UTC).strftime(botocore.auth.SIGV4_TIMESTAMP)
        request.context["timestamp"] = stamp
        # botocore's stubs leave out this (long-standing) hook of SigV4QueryAuth.
        super()._modify_request_before_signing(request)  # type: ignore[misc]


# A signature version of our own, chosen only for presigned GETs of our clients (below).
botocore.auth.AUTH_TYPE_MAPS.setdefault(_HOUR_SIGNER, _HourQueryAuth)


def _choose_hour_signer(signature_version: str, **_: Any) -> str | None:
    return _HOUR_SIGNER if signature_version == "s3v4-query" else None


def _content_disposition(filename: str) -> str:
    safe = "".join(c for c in filename if c.isascii() and c.isprintable() and c not in '"\\')
    return f'inline; filename="{safe}"'


class S3Storage:
    """An S3-compatible bucket: AWS S3, or any server that speaks its API (`endpoint_url`)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        client: S3Client | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client: S3Client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region,
            # Path-style addressing for custom endpoints: they rarely have DNS per bucket.
            config=CLIENT_CONFIG.merge(
                Config(s3={"addressing_style": "path" if endpoint_url else "auto"})
            ),
        )
        # The stubs type every handler as returning None; choose-signer handlers return the
        # signature version to use.
        self.client.meta.events.register_first(
            "choose-signer.s3.GetObject",
            _choose_hour_signer,  # type: ignore[arg-type]
            unique_id=_HOUR_SIGNER,
        )

    def object_key(self, key: str) -> str:
        """The key in the bucket: the storage key under the prefix."""
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, source_path: Path, content_type: str) -> None:
        # One object PUT (multipart for big files) is atomic: readers never see a part of it.
        self.client.upload_file(
            str(source_path),
            self.bucket,
            self.object_key(key),
            ExtraArgs={"ContentType": content_type},
        )

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def local_path(self, key: str) -> Path | None:
        return None

    def presigned_url(
        self, key: str, *, filename: str | None, content_type: str, expires: int
    ) -> str:
        params = {
            "Bucket": self.bucket,
            "Key": self.object_key(key),
            "ResponseContentType": content_type,
        }
        if filename:
            params["ResponseContentDisposition"] = _content_disposition(filename)
        # Signed as of the hour's start: an hour more keeps it valid for at least `expires`.
        lifetime = min(expires + PRESIGN_TIME_STEP, MAX_PRESIGN_SECONDS)
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=lifetime)

    def free_bytes(self) -> int | None:
        return None  # a bucket has no free space to report


def make_storage(settings: Settings) -> MediaStorage:
    """The storage `MEDIA_STORAGE` names; S3 settings were checked by `load_settings`."""
    if settings.media_storage == "s3":
        assert settings.s3_bucket is not None
        return S3Storage(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        )
    return LocalStorage(settings.media_root)
