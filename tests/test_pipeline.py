"""The job's life end to end: API → Redis → real Celery worker → simulator → credits → media."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import av
from PIL import Image

from shared.media.probe import probe_video
from tests.helpers import KLING_I2V, balance, generate, job_entries, wait_for_job


def _download(client, account, url: str) -> bytes:
    path = url.split("://", 1)[1].split("/", 1)[1]
    with client.get("/" + path, headers=account.headers) as response:
        assert response.status_code == 200
        assert response.mimetype == "video/mp4"
        return response.data


def test_text_to_video_completes_charges_and_lands_in_library(client, account, runtime, tmp_path):
    accepted = generate(
        client,
        account,
        "A golden retriever running on a beach at sunset",
        duration="5",
        aspect_ratio="9:16",
    )
    assert accepted["status"] == "queued"
    assert accepted["estimated_credits"] == 3.5
    job = wait_for_job(client, account, accepted["job_id"])

    assert job["status"] == "completed", job
    assert job["credits_used"] == 3.5
    assert job["progress"] == 100
    assert job["provider_request_id"]
    assert job["result"]["video"]["content_type"] == "video/mp4"
    assert job["result"]["media_asset_id"]

    video = tmp_path / "out.mp4"
    video.write_bytes(_download(client, account, job["result"]["video"]["url"]))
    info = probe_video(video)
    assert (info.width, info.height) == (360, 640)
    assert abs(info.duration_seconds - 5) < 0.1
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 120  # plays to the end

    assert job_entries(runtime, job["id"]) == {"hold": [350], "capture": [350]}
    assert balance(runtime, account).balance == 10000 - 350
    assert balance(runtime, account).held == 0

    listing = client.get("/v1/media?source_type=video_generation", headers=account.headers).json
    assert listing["total"] == 1
    asset = listing["data"][0]
    assert asset["source_job_id"] == job["id"]
    assert (asset["width"], asset["height"], asset["duration_seconds"]) == (360, 640, 5.0)


def _png_data_url(colour: tuple[int, int, int], size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_image_to_video_animates_the_given_image(client, account, tmp_path: Path):
    accepted = generate(
        client,
        account,
        "Slow zoom in",
        model=KLING_I2V,
        image_url=_png_data_url((220, 20, 20), (800, 800)),
        duration="3",
    )
    job = wait_for_job(client, account, accepted["job_id"])
    assert job["status"] == "completed", job
    assert job["credits_used"] == 2.1  # 0.07 × 3 s × 5 / 0.50

    video = tmp_path / "i2v.mp4"
    video.write_bytes(_download(client, account, job["result"]["video"]["url"]))
    info = probe_video(video)
    assert (info.width, info.height) == (480, 480)  # a square image gives a square video
    assert abs(info.duration_seconds - 3) < 0.1
    with av.open(str(video)) as container:
        frame = next(container.decode(video=0)).to_image()
    red, green, blue = frame.resize((1, 1)).getpixel((0, 0))
    assert red > 150 and green < 90 and blue < 90


def test_provider_failure_fails_the_job_and_charges_nothing(client, account, runtime):
    accepted = generate(client, account, "A storm [sim latency=1 fail='model exploded']")
    job = wait_for_job(client, account, accepted["job_id"])
    assert job["status"] == "failed"
    assert job["error"] == {"code": "provider_error", "message": "model exploded"}
    assert job["credits_used"] is None
    assert job_entries(runtime, job["id"]) == {"hold": [350], "release": [350]}
    assert balance(runtime, account).available == 10000


def test_provider_rejecting_the_submit_fails_the_job(client, account, runtime):
    accepted = generate(client, account, "Forbidden [sim reject]")
    job = wait_for_job(client, account, accepted["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_error"
    assert job["provider_request_id"] is None
    assert balance(runtime, account).available == 10000


def test_progress_is_stored_on_the_job_while_it_runs(client, account):
    accepted = generate(client, account, "A slow sunrise [sim latency=6]")
    running = wait_for_job(
        client, account, accepted["job_id"], statuses=("processing",), timeout=30
    )
    assert running["started_at"] is not None
    seen = wait_for_job(client, account, accepted["job_id"])
    assert seen["status"] == "completed"


def test_worker_logs_are_json_with_the_jobs_ids_and_no_api_key(client, account, worker_log):
    accepted = generate(client, account, "Logged [sim latency=0.5]")
    job = wait_for_job(client, account, accepted["job_id"])
    text = worker_log.read_text()
    assert account.key not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("job_id") == job["id"]]
    assert {"job is now submitted", "job is now settling", "job is now completed"} <= {
        line["message"] for line in mine
    }
    after_submit = [line for line in mine if line["message"] != "job is now submitted"]
    assert all(line["account_id"] == str(account.id) for line in mine)
    assert any(
        line.get("provider_request_id") == job["provider_request_id"] for line in after_submit
    )
    assert all({"time", "level", "logger"} <= set(line) for line in mine)
