"""The agent tools over the Model Context Protocol (`naive mcp`), end to end.

Each test starts the real server process over stdio (or HTTP) through the `mcp` client SDK,
against the real API, PostgreSQL and Celery worker of the session fixtures.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import httpx2
import pytest
from click.testing import CliRunner
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from services.cli.main import cli
from services.mcp_server import server as mcp_server
from shared.jobs.schemas import IDEMPOTENCY_KEY_RULE
from tests.helpers import KLING_T2V, balance, job_entries
from tests.stack import free_port, started
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
TOOLS = {
    "naive_generate_video",
    "naive_video_models",
    "naive_video_status",
    "naive_video_pricing",
    "naive_media_list",
    "naive_cancel_video",
}

NAIVE_MCP = [sys.executable, "-m", "services.cli.main", "mcp"]

T = TypeVar("T")


def server_env(live_api: str, key: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "NAIVE_API_URL": live_api,
        "NAIVE_API_KEY": key,
        "NAIVE_DATA_DIR": str(data_dir),
        **extra,
    }


def with_mcp(env: dict[str, str], body: Callable[[ClientSession], Awaitable[T]], *args: str) -> T:
    """Start `naive mcp ARGS` over stdio, run `body` with an initialized session, stop it."""
    params = StdioServerParameters(
        command=NAIVE_MCP[0],
        args=[*NAIVE_MCP[1:], *args],
        env=env,
        cwd=str(ROOT),
    )

    async def main() -> T:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await body(session)

    return anyio.run(main)


async def call(
    session: ClientSession, name: str, progress: list | None = None, **arguments: Any
) -> tuple[bool, dict]:
    """Call a tool; its error flag and its answer (the JSON text, same as structuredContent).
    With a `progress` list, the progress notifications are appended to it."""

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        assert progress is not None
        progress.append((value, total, message))

    result = await session.call_tool(
        name, arguments, progress_callback=on_progress if progress is not None else None
    )
    answer = json.loads(result.content[0].text)
    assert result.structured_content == answer
    return result.is_error, answer


def jobs_of(live_api: str, account: Any) -> list[dict]:
    response = httpx.get(f"{live_api}/v1/jobs", headers=account.headers, timeout=10)
    response.raise_for_status()
    return response.json()["data"]


def test_lists_the_six_tools_with_schemas_from_the_catalog(live_api, account, tmp_path):
    async def body(session: ClientSession) -> Any:
        return (await session.list_tools()).tools

    tools = {
        tool.name: tool for tool in with_mcp(server_env(live_api, account.key, tmp_path), body)
    }
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.input_schema["type"] == "object"
        assert tool.description
    catalog = httpx.get(f"{live_api}/v1/video/models", headers=account.headers).json()["data"]
    ids = [model["id"] for model in catalog]
    generate = tools["naive_generate_video"]
    assert generate.input_schema["required"] == ["model", "input"]
    assert generate.input_schema["properties"]["model"]["enum"] == ids
    assert tools["naive_video_pricing"].input_schema["properties"]["model"]["enum"] == ids
    inputs = generate.input_schema["properties"]["input"]["properties"]
    assert {"prompt", "duration", "aspect_ratio", "image_url", "negative_prompt"} <= set(inputs)
    assert {"5", "10"} <= set(inputs["duration"]["enum"])
    assert set(generate.input_schema["properties"]) == {
        "model",
        "input",
        "max_credits",
        "intent_key",
        "wait_seconds",
    }
    # An agent that never read our docs learns from the description alone what to do.
    text = generate.description
    for needed in ("required", "no default", "naive_video_models", "naive_video_status", "job_id"):
        assert needed in text
    assert tools["naive_video_status"].input_schema["required"] == ["job_id"]
    cancel = tools["naive_cancel_video"]
    assert cancel.input_schema["required"] == ["job_id"]
    assert cancel.output_schema is not None
    assert {"job_id", "status", "cancel_requested_at", "next_steps", "cost"} <= set(
        cancel.output_schema["properties"]
    )
    assert cancel.annotations is not None and cancel.annotations.destructive_hint


def test_free_tools_answer_with_cost_zero(live_api, account, tmp_path):
    async def body(session: ClientSession) -> dict[str, Any]:
        return {
            "models": await call(session, "naive_video_models"),
            "pricing": await call(session, "naive_video_pricing", model=KLING_T2V, duration="5"),
            "pricing_int": await call(session, "naive_video_pricing", model=KLING_T2V, duration=10),
            "media": await call(session, "naive_media_list", limit=5),
        }

    answers = with_mcp(server_env(live_api, account.key, tmp_path), body)
    for is_error, answer in answers.values():
        assert not is_error
        assert answer["cost"] == 0
    models = answers["models"][1]
    assert models["count"] == len(models["models"]) >= 5
    kling = next(model for model in models["models"] if model["id"] == KLING_T2V)
    assert kling["pricing"]["unit_price_usd"] == 0.07
    assert kling["parameters"]["prompt"]["required"] is True
    pricing = answers["pricing"][1]
    assert (pricing["model"], pricing["duration"], pricing["estimated_credits"]) == (
        KLING_T2V,
        5,
        3.5,
    )
    assert (pricing["unit_price_usd"], pricing["credit_value_usd"]) == (0.07, 0.5)
    assert answers["pricing_int"][1]["estimated_credits"] == 7.0
    assert answers["media"][1]["data"] == []


def test_generate_with_wait_returns_the_video_url_and_credits_used(
    live_api, account, runtime, tmp_path
):
    progress: list[tuple] = []

    async def body(session: ClientSession) -> tuple:
        generated = await call(
            session,
            "naive_generate_video",
            progress,
            model=KLING_T2V,
            input={"prompt": "A golden retriever on a beach [sim latency=1]", "duration": "5"},
            wait_seconds=60,
        )
        job_id = generated[1]["job_id"]
        status = await call(session, "naive_video_status", job_id=job_id)
        media = await call(session, "naive_media_list")
        return generated, status, media

    (is_error, answer), (_, status), (_, media) = with_mcp(
        server_env(live_api, account.key, tmp_path), body
    )
    assert not is_error, answer
    assert answer["status"] == "completed"
    assert answer["estimated_credits"] == 3.5
    assert answer["credits_used"] == 3.5
    # the simulator bills as fal does: 5 s of output at the model's $0.07 a second
    assert answer["billing"] == {
        "estimated_credits": 3.5,
        "charged_credits": 3.5,
        "provider_units": 5.0,
        "provider_cost_usd": 0.35,
    }
    assert answer["video_url"].startswith(live_api)
    assert answer["replayed"] is False
    assert answer["hint"]
    video = httpx.get(answer["video_url"], timeout=30)
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert status["status"] == "completed"
    assert status["credits_used"] == 3.5
    assert status["cost"] == 0
    assert status["video_url"]
    assert [asset["source_job_id"] for asset in media["data"]] == [answer["job_id"]]
    assert job_entries(runtime, answer["job_id"]) == {"hold": [350], "capture": [350]}
    # While it waited, the server reported the job's progress to the client: one
    # notification per event of the job's stream, from queued to completed.
    assert progress[0] == (0, 100, "queued")
    assert "processing" in [status for _, _, status in progress]
    assert progress[-1] == (100, 100, "completed")
    assert all(total == 100 for _, total, _ in progress)
    events = httpx.get(
        f"{live_api}/v1/jobs/{answer['job_id']}/events", headers=account.headers, timeout=30
    ).text
    assert len(progress) == events.count("\nevent: ")


def test_generate_returns_at_once_then_status_polls_to_completion(live_api, account, tmp_path):
    async def body(session: ClientSession) -> tuple:
        submitted = await call(
            session,
            "naive_generate_video",
            model=KLING_T2V,
            input={"prompt": "A lighthouse at dusk [sim latency=0.5]"},
        )
        job_id = submitted[1]["job_id"]
        with anyio.fail_after(60):
            while True:
                status = await call(session, "naive_video_status", job_id=job_id)
                if status[1]["status"] not in ("queued", "processing"):
                    return submitted, status
                await anyio.sleep(0.3)

    (is_error, submitted), (_, status) = with_mcp(server_env(live_api, account.key, tmp_path), body)
    assert not is_error
    assert submitted["status"] == "queued"
    assert submitted["estimated_credits"] == 3.5
    assert submitted["credits_used"] is None
    assert "naive_video_status" in submitted["hint"]
    assert submitted["api_hint"].startswith("Poll GET /v1/jobs/")
    assert status["status"] == "completed"
    assert status["video_url"]
    assert status["credits_used"] == 3.5


def test_max_credits_below_the_estimate_refuses_and_submits_nothing(
    live_api, account, runtime, tmp_path
):
    async def body(session: ClientSession) -> tuple:
        return await call(
            session,
            "naive_generate_video",
            model=KLING_T2V,
            input={"prompt": "An expensive epic", "duration": "10"},
            max_credits=5,
        )

    is_error, answer = with_mcp(server_env(live_api, account.key, tmp_path), body)
    assert is_error
    assert answer["error"]["code"] == "max_credits_exceeded"
    assert answer["error"]["estimated_credits"] == 7.0
    assert "7" in answer["error"]["message"] and "5" in answer["error"]["message"]
    assert answer["next_steps"]
    assert jobs_of(live_api, account) == []
    assert balance(runtime, account).held == 0


def test_budget_refuses_a_job_that_would_exceed_it(live_api, account, tmp_path):
    async def body(session: ClientSession) -> tuple:
        first = await call(
            session,
            "naive_generate_video",
            model=KLING_T2V,
            input={"prompt": "First [sim latency=1]"},
        )
        second = await call(
            session,
            "naive_generate_video",
            model=KLING_T2V,
            input={"prompt": "Second [sim latency=1]"},
        )
        return first, second

    env = server_env(live_api, account.key, tmp_path, NAIVE_MCP_BUDGET="5")
    (first_error, first), (second_error, second) = with_mcp(env, body)
    assert not first_error
    assert first["spending"] == {"spent": 3.5, "jobs": 1, "budget": 5.0, "remaining": 1.5}
    assert second_error
    error = second["error"]
    assert error["code"] == "budget_exceeded"
    assert (error["budget"], error["spent"], error["estimated_credits"]) == (5.0, 3.5, 3.5)
    assert "budget is 5 credits for all its sessions together" in error["message"]
    assert "3.5 are already committed" in error["message"]
    assert "estimated at 3.5" in error["message"]
    assert [job["id"] for job in jobs_of(live_api, account)] == [first["job_id"]]


def test_budget_gives_back_what_a_failed_job_held(live_api, account, tmp_path):
    """A job that failed costs nothing, so it stops counting against the budget
    once it has ended (it used to count as spent, and refuse the next generate)."""

    async def body(session: ClientSession) -> tuple:
        failing = {"model": KLING_T2V, "input": {"prompt": "Doomed [sim latency=0.5 fail='x']"}}
        first = await call(session, "naive_generate_video", **failing, wait_seconds=30)
        second = await call(
            session, "naive_generate_video", model=KLING_T2V, input={"prompt": "Next"}
        )
        return first, second

    env = server_env(live_api, account.key, tmp_path, NAIVE_MCP_BUDGET="5")
    (_, first), (second_error, second) = with_mcp(env, body)
    assert first["error"]["code"] == "provider_error", first
    assert not second_error, second
    assert second["spending"] == {"spent": 3.5, "jobs": 2, "budget": 5.0, "remaining": 1.5}


def test_budget_option_counts_each_job_once(live_api, account, tmp_path):
    """With --budget 4 an identical retry still passes: it replays the job already counted."""

    async def body(session: ClientSession) -> list:
        arguments = {"model": KLING_T2V, "input": {"prompt": "Once [sim latency=1]"}}
        return [await call(session, "naive_generate_video", **arguments) for _ in range(2)]

    env = server_env(live_api, account.key, tmp_path)
    (_, first), (again_error, again) = with_mcp(env, body, "--budget", "4")
    assert not again_error, again
    assert again["job_id"] == first["job_id"]
    assert again["replayed"] is True
    assert again["spending"]["spent"] == 3.5


def test_retry_with_the_same_intent_key_returns_the_same_job_charged_once(
    live_api, account, runtime, tmp_path
):
    arguments = {
        "model": KLING_T2V,
        "input": {"prompt": "One intent [sim latency=1]", "duration": "5"},
        "intent_key": "demo-video-for-acme-1",
    }

    async def body(session: ClientSession) -> list:
        return [await call(session, "naive_generate_video", **arguments)]

    env = server_env(live_api, account.key, tmp_path)
    # Two separate sessions, as an agent that crashed and retried would open.
    [(_, first)] = with_mcp(env, body)
    [(again_error, again)] = with_mcp(env, body)
    assert not again_error
    assert again["job_id"] == first["job_id"]
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["intent_key"] == "demo-video-for-acme-1"
    assert [job["id"] for job in jobs_of(live_api, account)] == [first["job_id"]]
    assert job_entries(runtime, first["job_id"])["hold"] == [350]


def test_api_errors_come_back_as_tool_errors_with_what_to_do(live_api, make_account, tmp_path):
    poor = make_account("1")

    async def body(session: ClientSession) -> dict[str, tuple]:
        return {
            "model": await call(
                session,
                "naive_generate_video",
                model="fal-ai/kling-video/v3/pro/text-to-vido",
                input={"prompt": "Typo"},
            ),
            "no_model": await call(session, "naive_generate_video", input={"prompt": "x"}),
            "credits": await call(
                session, "naive_generate_video", model=KLING_T2V, input={"prompt": "Too dear"}
            ),
            "input": await call(
                session,
                "naive_generate_video",
                model=KLING_T2V,
                input={"prompt": "Bad", "duration": "7000"},
            ),
            "status": await call(
                session, "naive_video_status", job_id="00000000-0000-0000-0000-000000000000"
            ),
            "intent_key": await call(
                session,
                "naive_generate_video",
                model=KLING_T2V,
                input={"prompt": "Accented"},
                intent_key="café",
            ),
        }

    answers = with_mcp(server_env(live_api, poor.key, tmp_path), body)
    for is_error, answer in answers.values():
        assert is_error
        assert answer["error"]["code"] and answer["error"]["message"]
        assert answer["next_steps"]
        assert answer["cost"] == 0
    model = answers["model"][1]
    assert model["error"]["code"] == "invalid_model"
    assert KLING_T2V in model["error"]["suggestions"]
    assert any("naive_video_models" in step for step in model["next_steps"])
    assert answers["no_model"][1]["error"]["code"] == "invalid_arguments"
    assert "no default" in answers["no_model"][1]["error"]["message"]
    credits = answers["credits"][1]
    assert credits["error"]["code"] == "insufficient_credits"
    assert credits["error"]["estimated_credits"] == 3.5
    assert any("naive_video_pricing" in step for step in credits["next_steps"])
    assert answers["input"][1]["error"]["code"] == "invalid_input"
    assert "input.duration" in answers["input"][1]["error"]["fields"]
    assert answers["status"][1]["error"]["code"] == "not_found"
    intent_key = answers["intent_key"][1]["error"]
    assert intent_key["code"] == "invalid_arguments"
    assert intent_key["fields"] == {"intent_key": f"`intent_key` {IDEMPOTENCY_KEY_RULE}."}
    assert jobs_of(live_api, poor) == []


def test_a_bad_duration_is_named_input_duration_under_a_budget_or_max_credits(
    live_api, account, tmp_path
):
    """A budget (or max_credits) prices the job before submitting it: a duration the model
    refuses is still named `input.duration`, the argument that carried it, as without one,
    and the advice points at the models' parameters, not at a `duration` argument that
    naive_generate_video does not have."""

    async def body(session: ClientSession) -> list[tuple]:
        bad = {"model": KLING_T2V, "input": {"prompt": "Bad", "duration": "7000"}}
        return [
            await call(session, "naive_generate_video", **bad),
            await call(session, "naive_generate_video", **bad, max_credits=50),
        ]

    env = server_env(live_api, account.key, tmp_path, NAIVE_MCP_BUDGET="20")
    for is_error, answer in with_mcp(env, body):
        assert is_error and answer["error"]["code"] == "invalid_input", answer
        assert list(answer["error"]["fields"]) == ["input.duration"]
        assert answer["error"]["message"] == "Some input fields are invalid: input.duration."
        assert answer["next_steps"] == [
            f"fix input.duration: {answer['error']['fields']['input.duration']}",
            "naive_video_models lists each model's parameters and allowed values",
        ]
    assert jobs_of(live_api, account) == []


def test_invalid_input_advice_points_where_the_field_is_fixed(live_api, account, tmp_path):
    """Only a model or input field points at the models' parameters; any other at the
    tool's own arguments. Every refusal pointed at naive_video_models, a page offset too."""

    async def body(session: ClientSession) -> dict[str, tuple]:
        return {
            "offset": await call(session, "naive_media_list", offset=2_000_000),
            "input": await call(
                session,
                "naive_generate_video",
                model=KLING_T2V,
                input={"prompt": "Bad", "duration": "7000"},
            ),
        }

    answers = with_mcp(server_env(live_api, account.key, tmp_path), body)
    for is_error, answer in answers.values():
        assert is_error and answer["error"]["code"] == "invalid_input", answer
    offset = answers["offset"][1]
    assert offset["next_steps"] == [
        f"fix offset: {offset['error']['fields']['offset']}",
        "the tool's input schema lists each argument and its allowed values",
    ]
    duration = answers["input"][1]
    assert duration["next_steps"] == [
        f"fix input.duration: {duration['error']['fields']['input.duration']}",
        "naive_video_models lists each model's parameters and allowed values",
    ]
    assert jobs_of(live_api, account) == []


def test_cancel_stops_a_job_and_releases_its_hold(live_api, account, tmp_path):
    async def body(session: ClientSession) -> tuple:
        submitted = await call(
            session,
            "naive_generate_video",
            model=KLING_T2V,
            input={"prompt": "A queue that never moves [sim stall]"},
        )
        job_id = submitted[1]["job_id"]
        await anyio.to_thread.run_sync(
            lambda: wait_for(
                lambda: (
                    httpx.get(
                        f"{live_api}/v1/jobs/{job_id}", headers=account.headers, timeout=10
                    ).json()["status"]
                    == "processing"
                ),
                timeout=60,
                interval=0.2,
            )
        )
        cancelled = await call(session, "naive_cancel_video", job_id=job_id)
        unknown = await call(session, "naive_cancel_video", job_id=str(uuid.uuid4()))
        return cancelled, unknown

    (is_error, answer), (unknown_error, unknown) = with_mcp(
        server_env(live_api, account.key, tmp_path), body
    )
    assert not is_error, answer
    assert answer["cancel_requested_at"] and answer["cost"] == 0
    assert answer["status"] in ("processing", "cancelled")
    assert answer["next_steps"]
    job_id = answer["job_id"]
    wait_for(
        lambda: (
            httpx.get(f"{live_api}/v1/jobs/{job_id}", headers=account.headers, timeout=10).json()[
                "status"
            ]
            == "cancelled"
        ),
        timeout=60,
        interval=0.2,
    )
    credits = httpx.get(f"{live_api}/v1/credits", headers=account.headers, timeout=10).json()
    assert credits["held"] == 0
    assert unknown_error and unknown["error"]["code"] == "not_found"


def test_a_job_that_fails_while_waited_on_is_a_tool_error(live_api, account, runtime, tmp_path):
    async def body(session: ClientSession) -> tuple:
        return await call(
            session,
            "naive_generate_video",
            model=KLING_T2V,
            input={"prompt": "Doomed [sim fail='content policy'] [sim latency=0.3]"},
            wait_seconds=60,
        )

    is_error, answer = with_mcp(server_env(live_api, account.key, tmp_path), body)
    assert is_error
    assert answer["error"]["code"] == "provider_error"
    assert "content policy" in answer["error"]["message"]
    assert "Nothing was charged" in answer["error"]["message"]
    assert answer["job"]["status"] == "failed"
    assert answer["job"]["credits_used"] in (None, 0)
    assert "capture" not in job_entries(runtime, answer["job"]["job_id"])


def test_an_unreachable_api_still_lists_tools_and_reports_the_error(tmp_path):
    async def body(session: ClientSession) -> tuple:
        tools = (await session.list_tools()).tools
        return tools, await call(session, "naive_video_models")

    env = server_env("http://127.0.0.1:9", "nv_sk_unused", tmp_path)
    tools, (is_error, answer) = with_mcp(env, body)
    assert {tool.name for tool in tools} == TOOLS
    assert is_error
    assert answer["error"]["code"] == "connection_error"
    assert "127.0.0.1:9" in answer["next_steps"][0]


HTTP_TOKEN = "test-token-" + uuid.uuid4().hex


@contextmanager
def http_mcp(env: dict[str, str], log: Path, *args: str) -> Iterator[str]:
    """`naive mcp --transport http ARGS` running (with HTTP_TOKEN, unless `env` sets
    NAIVE_MCP_TOKEN to "" to let it make one); its URL."""
    port = free_port()
    with started(
        [*NAIVE_MCP, "--transport", "http", "--port", str(port), *args],
        log,
        env={"NAIVE_MCP_TOKEN": HTTP_TOKEN, **env, "PATH": "/usr/bin:/bin"},
        inherit_env=False,
        ready=lambda: b"Uvicorn running" in log.read_bytes(),
        timeout=30,
        stop_timeout=10,
    ):
        yield f"http://127.0.0.1:{port}/mcp"


def bearer(token: str) -> httpx2.AsyncClient:
    """An HTTP client for the MCP SDK's transport that sends `token`."""
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})


async def generate_in_new_session(url: str, arguments: dict[str, Any]) -> tuple:
    """Open a fresh MCP session at `url`: its tools, a pricing answer and a generate answer."""
    async with (
        bearer(HTTP_TOKEN) as http_client,
        streamable_http_client(url, http_client=http_client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = (await session.list_tools()).tools
        pricing = await call(session, "naive_video_pricing", model=KLING_T2V, duration="5")
        generated = await call(session, "naive_generate_video", **arguments)
        return tools, pricing, generated


def test_streamable_http_transport_serves_the_same_tools_with_one_budget(
    live_api, account, tmp_path
):
    arguments = {"model": KLING_T2V, "input": {"prompt": "Over HTTP [sim latency=1]"}}
    env = server_env(live_api, account.key, tmp_path)

    async def two_sessions(url: str) -> list[tuple]:
        return [await generate_in_new_session(url, arguments) for _ in range(2)]

    with http_mcp(env, tmp_path / "mcp-http.log", "--budget", "20") as url:
        (tools, (is_error, pricing), (_, first)), (_, _, (_, second)) = anyio.run(two_sessions, url)
    assert {tool.name for tool in tools} == TOOLS
    assert not is_error
    assert pricing["estimated_credits"] == 3.5
    # Each session has its own derived intent keys, so the same arguments make two jobs; the
    # budget is the server's, and the second session sees what the first committed.
    assert first["job_id"] != second["job_id"]
    assert first["spending"] == {"spent": 3.5, "jobs": 1, "budget": 20.0, "remaining": 16.5}
    assert second["spending"] == {"spent": 7.0, "jobs": 2, "budget": 20.0, "remaining": 13.0}
    assert len(jobs_of(live_api, account)) == 2


def test_sessions_together_cannot_exceed_the_budget(live_api, account, tmp_path):
    """--budget 8 allows two 3.5-credit jobs in all: a third session's job is refused, as
    is one that several sessions open at once would push over."""
    env = server_env(live_api, account.key, tmp_path)

    async def sessions(url: str) -> list[dict]:
        answers: list[dict] = [{} for _ in range(3)]

        async def one(index: int) -> None:
            prompt = f"Session {index} [sim latency=5]"
            arguments = {"model": KLING_T2V, "input": {"prompt": prompt}}
            answers[index] = (await generate_in_new_session(url, arguments))[2][1]

        async with anyio.create_task_group() as group:
            for index in range(3):
                group.start_soon(one, index)
        return answers

    with http_mcp(env, tmp_path / "mcp-http.log", "--budget", "8") as url:
        answers = anyio.run(sessions, url)
    accepted = [answer for answer in answers if "job_id" in answer]
    refused = [answer["error"] for answer in answers if "error" in answer]
    assert len(accepted) == 2, answers
    assert [error["code"] for error in refused] == ["budget_exceeded"]
    assert (refused[0]["spent"], refused[0]["remaining"]) == (7.0, 1.0)
    assert {job["id"] for job in jobs_of(live_api, account)} == {
        answer["job_id"] for answer in accepted
    }


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "stranger", "version": "1"},
    },
}


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_http_refuses_a_client_without_the_token_printed_at_start(
    live_api, account, tmp_path, host
):
    """Over HTTP the tools spend with the operator's API key: a request without the server's
    bearer token is answered 401 before any MCP handling, and one with it is served, on a
    loopback address as on all of them (which is warned about: it is plain HTTP)."""
    env = {**server_env(live_api, account.key, tmp_path), "NAIVE_MCP_TOKEN": ""}
    log = tmp_path / "mcp-http.log"

    async def with_token(url: str, token: str) -> set[str]:
        async with (
            bearer(token) as http_client,
            streamable_http_client(url, http_client=http_client) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return {tool.name for tool in (await session.list_tools()).tools}

    with http_mcp(env, log, "--host", host) as url:
        [token] = re.findall(rb"Authorization: Bearer (\S+)", log.read_bytes())
        headers = {"Accept": "application/json, text/event-stream"}
        refused = [
            httpx.post(url, json=INITIALIZE, headers={**headers, **extra}, timeout=10)
            for extra in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"})
        ]
        tools = anyio.run(with_token, url, token.decode())
    assert [response.status_code for response in refused] == [401, 401, 401]
    assert not any("mcp-session-id" in response.headers for response in refused)
    assert tools == TOOLS
    warned = b"Warning: serving to the network on 0.0.0.0 over plain HTTP" in log.read_bytes()
    assert warned == (host == "0.0.0.0")


@pytest.mark.parametrize(
    ("args", "env_token", "said"),
    [
        (["--token", "fifteen-chars!!"], None, "the token has 15 characters; use at least 16"),
        (["--token", ""], None, "the token has 0 characters; use at least 16"),
        ([], "short", "the token from NAIVE_MCP_TOKEN has 5 characters; use at least 16"),
        (["--token", "sixteen chars ok"], None, "must be visible ASCII characters"),
        (["--token", "jeton-de-qualité"], None, "must be visible ASCII characters"),
    ],
)
@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_a_guessable_token_is_refused_before_serving(monkeypatch, transport, args, env_token, said):
    """The token guards tools that spend the account's credits: one under 16 characters,
    from --token or NAIVE_MCP_TOKEN, is a usage error (exit 2) and nothing is served."""
    served: list[dict[str, Any]] = []
    monkeypatch.setattr(mcp_server, "serve", lambda **kwargs: served.append(kwargs))
    env = {"NAIVE_API_KEY": "nv_sk_test", "NAIVE_MCP_TOKEN": env_token}
    answer = CliRunner().invoke(cli, ["mcp", "--transport", transport, *args], env=env)
    assert answer.exit_code == 2, answer.output
    envelope = json.loads(answer.output)
    assert envelope["result"]["code"] == "usage_error"
    assert said in envelope["result"]["message"]
    assert served == []


def test_a_token_of_16_characters_is_served(monkeypatch):
    served: list[dict[str, Any]] = []
    monkeypatch.setattr(mcp_server, "serve", lambda **kwargs: served.append(kwargs))
    env = {"NAIVE_API_KEY": "nv_sk_test", "NAIVE_MCP_TOKEN": "0123456789abcdef"}
    answer = CliRunner().invoke(cli, ["mcp", "--transport", "http"], env=env)
    assert answer.exit_code == 0, answer.output
    assert [kwargs["token"] for kwargs in served] == ["0123456789abcdef"]
