"""What each agent tool does: thin calls of the HTTP API, plus the money guards.

The guards run here, before anything is submitted: `max_credits` (per call) and the server's
budget (what the jobs submitted through this server process commit, across all its MCP
sessions: one operator's `--budget` is not multiplied by the sessions an agent opens, or by
the agents that connect). Retries are made safe with the API's `Idempotency-Key`: the
agent's `intent_key`, or a key derived from the session and the request, so an identical
retry in one session is replayed instead of paid twice.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

from services.cli.client import ApiClient, read, segment
from services.cli.errors import ExitCode, Failure
from services.cli.wait import Update, watch
from services.mcp_server import schemas
from shared.catalog.schemas import Model, ModelList, PriceQuote
from shared.errors import is_model_field
from shared.jobs.schemas import IDEMPOTENCY_KEY_RULE, Job, JobAccepted, valid_idempotency_key
from shared.jobs.status import PublicStatus
from shared.media.schemas import MediaPage

T = TypeVar("T")
Answer = dict[str, Any]

CATALOG_TTL_SECONDS = 300.0
MAX_SESSIONS = 1000


class ToolError(Exception):
    """A tool call that failed: reported to the agent as an MCP tool error (isError)."""

    def __init__(
        self,
        error: Mapping[str, Any],
        *,
        next_steps: list[str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(str(error.get("message", "")))
        self.error = dict(error)
        self.next_steps = next_steps or []
        self.details = dict(details or {})

    def payload(self) -> Answer:
        """The error, what to do next, and the cost: none, since nothing was charged."""
        return {
            "error": self.error,
            **self.details,
            "next_steps": self.next_steps,
            "cost": 0,
        }


@dataclass
class AgentSession:
    """One MCP session: the id its derived intent keys are made of, and the keys it used."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    keys: dict[str, str] = field(default_factory=dict)  # idempotency key → job id


@dataclass
class Spending:
    """The server's spending, all sessions together: what each job submitted through it
    commits, its estimate until the server sees it end, then its charge (nothing for a
    failed or cancelled job)."""

    jobs: dict[str, Decimal] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    # Held from the budget check to the job's recording, so that two sessions cannot both
    # pass the check on the same remaining credits.
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    @property
    def spent(self) -> Decimal:
        return sum(self.jobs.values(), Decimal(0))


class NaiveTools:
    """The tools of one server process; `session_key` tells MCP sessions apart."""

    def __init__(self, client: ApiClient, *, budget: Decimal | None = None) -> None:
        self.client = client
        self.budget = budget
        self.spending = Spending()
        self._sessions: OrderedDict[str, AgentSession] = OrderedDict()
        self._catalog: list[Model] | None = None
        self._catalog_at = 0.0

    # -- plumbing -------------------------------------------------------------------------

    async def _api(self, call: Callable[[], T]) -> T:
        """Run one blocking API call off the event loop; API failures become tool errors."""
        try:
            return await anyio.to_thread.run_sync(call)
        except Failure as failure:
            raise api_error(failure, api_url=self.client.base_url) from None

    def session(self, key: str) -> AgentSession:
        """The session for `key`, made on first use (the oldest are forgotten past a bound)."""
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = AgentSession()
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(key)
        return session

    async def catalog(self, *, refresh: bool = False) -> list[Model]:
        """The model catalog's `data`, cached for a few minutes."""
        fresh = time.monotonic() - self._catalog_at < CATALOG_TTL_SECONDS
        if self._catalog is None or refresh or not fresh:
            answer = await self._api(partial(self.client.fetch, ModelList, "/v1/video/models"))
            self._catalog = answer.data
            self._catalog_at = time.monotonic()
        return self._catalog

    async def catalog_or_none(self) -> list[Model] | None:
        """The catalog, or None when the API cannot give it (the tools are listed anyway)."""
        try:
            return await self.catalog()
        except ToolError:
            return None

    # -- the tools ------------------------------------------------------------------------

    async def video_models(self, arguments: Mapping[str, Any]) -> Answer:
        _only(arguments, set())
        models = await self.catalog(refresh=True)
        example = models[0].id if models else "MODEL"
        return schemas.ModelsAnswer(
            models=[model.model_dump(mode="json", exclude={"input_schema"}) for model in models],
            count=len(models),
            next_steps=[
                f'{schemas.PRICING} {{"model": "{example}", "duration": "5"}} previews a cost',
                f'{schemas.GENERATE} {{"model": "{example}", "input": {{"prompt": "..."}}}} '
                "makes a video",
            ],
        ).model_dump(mode="json")

    async def video_status(self, arguments: Mapping[str, Any]) -> Answer:
        _only(arguments, {"job_id"})
        job_id = _required_string(arguments, "job_id")
        job = await self._job(job_id)
        answer = schemas.StatusAnswer.of(job, next_steps=job_next_steps(job))
        return answer.model_dump(mode="json")

    async def cancel_video(self, arguments: Mapping[str, Any]) -> Answer:
        _only(arguments, {"job_id"})
        job_id = _required_string(arguments, "job_id")
        job = await self._api(lambda: read(Job, self.client.delete(f"/v1/jobs/{segment(job_id)}")))
        next_steps = (
            [f'{schemas.STATUS} {{"job_id": "{job_id}"}} shows when it has stopped']
            if job.status is not PublicStatus.CANCELLED
            else [f"{schemas.GENERATE} submits a new job"]
        )
        answer = schemas.CancelAnswer.of(
            job, cancel_requested_at=job.cancel_requested_at, next_steps=next_steps
        )
        return answer.model_dump(mode="json")

    async def video_pricing(self, arguments: Mapping[str, Any]) -> Answer:
        _only(arguments, {"model", "duration"})
        model = _required_string(arguments, "model")
        duration = _duration(arguments.get("duration"))
        quote = await self._quote(model, duration)
        return schemas.PricingAnswer(
            **dict(quote),
            next_steps=[
                f"{schemas.GENERATE} with this model submits the job; the credits are held "
                "then and charged only if it completes"
            ],
        ).model_dump(mode="json")

    async def media_list(self, arguments: Mapping[str, Any]) -> Answer:
        _only(arguments, {"source_type", "search", "limit", "offset"})
        source_type = _string(arguments, "source_type") or "video_generation"
        search = _string(arguments, "search")
        limit = _integer(arguments, "limit", minimum=1, maximum=100)
        offset = _integer(arguments, "offset", minimum=0)
        page = await self._api(
            partial(
                self.client.fetch,
                MediaPage,
                "/v1/media",
                {"source_type": source_type, "search": search, "limit": limit, "offset": offset},
            )
        )
        seen = page.offset + len(page.data)
        next_steps = []
        if seen < page.total:
            next_steps.append(f'{schemas.MEDIA_LIST} {{"offset": {seen}}} for the next page')
        return schemas.MediaListAnswer(**dict(page), next_steps=next_steps).model_dump(mode="json")

    async def generate_video(
        self,
        arguments: Mapping[str, Any],
        *,
        session_key: str,
        progress: Callable[[float, str], Any] | None = None,
    ) -> Answer:
        _only(arguments, {"model", "input", "max_credits", "intent_key", "wait_seconds"})
        model = _required_string(arguments, "model")
        model_input = arguments.get("input")
        if not isinstance(model_input, dict):
            raise invalid_arguments(
                "`input` must be an object of the model's parameters, e.g. "
                '{"prompt": "A cat on a skateboard", "duration": "5"}.',
                field="input",
            )
        max_credits = _decimal(arguments, "max_credits")
        intent_key = _intent_key(arguments)
        wait_seconds = _decimal(arguments, "wait_seconds") or Decimal(0)
        wait = float(min(wait_seconds, Decimal(schemas.MAX_WAIT_SECONDS)))

        session = self.session(session_key)
        key = intent_key or derived_intent_key(session.id, model, model_input)
        async with self.spending.lock:
            # A key this session already submitted is replayed by the API: no new spending.
            known = key in session.keys
            estimate: Decimal | None = None
            if max_credits is not None or (self.budget is not None and not known):
                quote = await self._quote(
                    model, _duration(model_input.get("duration")), name="input.duration"
                )
                estimate = Decimal(str(quote.estimated_credits))
            if max_credits is not None and estimate is not None and estimate > max_credits:
                raise ToolError(
                    {
                        "code": "max_credits_exceeded",
                        "message": f"This video is estimated at {_num(estimate)} credits, above "
                        f"max_credits {_num(max_credits)}. Nothing was submitted.",
                        "estimated_credits": float(estimate),
                        "max_credits": float(max_credits),
                    },
                    next_steps=[
                        "raise max_credits, or lower input.duration, or pick a cheaper model "
                        f"({schemas.PRICING} previews each cost, {schemas.MODELS} lists prices)"
                    ],
                )
            if self.budget is not None and not known and estimate is not None:
                await self._check_budget(estimate)
            accepted, headers = await self._api(
                partial(
                    self._submit, {"model": model, "input": model_input}, {"Idempotency-Key": key}
                )
            )
            job_id = str(accepted.job_id)
            replayed = headers.get("Idempotent-Replayed", "").lower() == "true"
            if not replayed and job_id not in self.spending.jobs:
                self.spending.jobs[job_id] = Decimal(str(accepted.estimated_credits))
            session.keys[key] = job_id

        answer: Answer = {
            "job_id": job_id,
            "status": accepted.status.value,
            "model": accepted.model,
            "estimated_credits": accepted.estimated_credits,
            "estimated_seconds": accepted.estimated_seconds,
            "credits_used": None,
            "replayed": replayed,
            "intent_key": key,
            "hint": (
                f"Credits are held now and charged only if the job completes. Call "
                f'{schemas.STATUS} {{"job_id": "{job_id}"}} every 15-30 s until status is '
                f"{schemas.COMPLETED} (then video_url is set) or {schemas.FAILED}."
            ),
            "api_hint": accepted.hint,
            "spending": self._spending_view(),
        }
        if wait <= 0:
            return {**answer, "next_steps": [f'{schemas.STATUS} {{"job_id": "{job_id}"}}']}
        job = await self._follow(job_id, wait, progress)
        summary = job_summary(job)
        if job.status.is_final and job.status is not PublicStatus.COMPLETED:
            raise ToolError(
                {
                    "code": job.error.code if job.error else f"job_{job.status.value}",
                    "message": f"Job {job_id} {job.status.value}: "
                    f"{job.error.message if job.error else 'no reason given'}. Nothing was "
                    "charged: the credit hold was released.",
                },
                next_steps=job_next_steps(job),
                details={"job": summary},
            )
        answer.update(summary)
        answer["hint"] = (
            "Done: video_url is a playable MP4; the video is also in the media library."
            if job.status is PublicStatus.COMPLETED
            else f"Still {job.status.value} after {wait:g} s; it keeps running. "
            f'Call {schemas.STATUS} {{"job_id": "{job_id}"}} every 15-30 s.'
        )
        return {**answer, "next_steps": job_next_steps(job)}

    # -- helpers --------------------------------------------------------------------------

    async def _quote(
        self, model: str, duration: str | None, *, name: str = "duration"
    ) -> PriceQuote:
        """The price of `duration` seconds of `model`; a duration the model refuses is named
        `name`, the argument that carried it (`input.duration` for a generate, so the advice
        points at the model's parameters, where it is fixed)."""
        try:
            return await anyio.to_thread.run_sync(
                partial(
                    self.client.fetch,
                    PriceQuote,
                    "/v1/video/pricing",
                    {"model": model, "duration": duration},
                )
            )
        except Failure as failure:
            fields = failure.error.get("fields")
            if failure.code == "invalid_input" and isinstance(fields, dict) and name != "duration":
                failure.error["fields"] = {
                    name if field == "duration" else field: problem
                    for field, problem in fields.items()
                }
                failure.error["message"] = f"Some input fields are invalid: {name}."
            raise api_error(failure, api_url=self.client.base_url) from None

    async def _job(self, job_id: str) -> Job:
        return await self._api(partial(self.client.fetch, Job, f"/v1/jobs/{segment(job_id)}"))

    def _submit(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[JobAccepted, Mapping[str, str]]:
        """POST the generation; the accepted job, and the headers (`Idempotent-Replayed`)."""
        answer, answer_headers = self.client.post_with_headers("/v1/video/generate", body, headers)
        return read(JobAccepted, answer), answer_headers

    async def _check_budget(self, estimate: Decimal) -> None:
        """Refuse a job that would take the server's spending past its budget (checked again
        after the jobs that ended are counted at their charges)."""
        assert self.budget is not None
        spending = self.spending
        if spending.spent + estimate > self.budget:
            await self._settle()
        if spending.spent + estimate <= self.budget:
            return
        remaining = max(self.budget - spending.spent, Decimal(0))
        raise ToolError(
            {
                "code": "budget_exceeded",
                "message": f"Refused: this MCP server's budget is {_num(self.budget)} credits "
                f"for all its sessions together, {_num(spending.spent)} are already committed "
                f"to {len(spending.jobs)} job(s) (charged for those that ended, estimated for "
                f"the others), and this video is estimated at {_num(estimate)} (it would "
                f"total {_num(spending.spent + estimate)}). Nothing was submitted.",
                "budget": float(self.budget),
                "spent": float(spending.spent),
                "estimated_credits": float(estimate),
                "remaining": float(remaining),
            },
            next_steps=[
                f"fit the remaining {_num(remaining)} credits: a shorter input.duration or a "
                f"cheaper model ({schemas.PRICING} previews each cost)",
                "or ask the user to raise the budget (naive mcp --budget N, or "
                "NAIVE_MCP_BUDGET) and restart the server",
            ],
        )

    async def _settle(self) -> None:
        """Replace the estimates of the server's jobs that have ended by their charges (a
        failed or cancelled job's hold is released: it commits nothing)."""
        spending = self.spending
        for job_id in [job_id for job_id in spending.jobs if job_id not in spending.ended]:
            job = await self._job(job_id)
            if job.status.is_final:
                spending.jobs[job_id] = Decimal(str(job.credits_used or 0))
                spending.ended.add(job_id)

    def _spending_view(self) -> dict[str, Any]:
        """The server's spending, all sessions together, and its budget if it has one."""
        spent = self.spending.spent
        view: dict[str, Any] = {"spent": float(spent), "jobs": len(self.spending.jobs)}
        if self.budget is not None:
            view["budget"] = float(self.budget)
            view["remaining"] = float(max(self.budget - spent, Decimal(0)))
        return view

    async def _follow(
        self, job_id: str, wait: float, progress: Callable[[float, str], Any] | None
    ) -> Job:
        """Follow the job's events (polling where the API has no stream) until it ends or
        `wait` seconds pass, reporting its progress at each; return its last state."""

        def report(update: Update) -> None:
            if progress is not None:
                job = update.job
                anyio.from_thread.run(progress, float(job.progress), job.status.value)

        try:
            return await anyio.to_thread.run_sync(
                partial(watch, self.client, job_id, timeout=wait, on_update=report)
            )
        except Failure as failure:
            if failure.code != "wait_timeout":
                raise api_error(failure, api_url=self.client.base_url) from None
        return await self._job(job_id)


def derived_intent_key(session_id: str, model: str, model_input: Mapping[str, Any]) -> str:
    """An idempotency key for (session, model, input): an identical retry is replayed."""
    canonical = json.dumps(
        {"session": session_id, "model": model, "input": model_input},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "mcp-" + hashlib.sha256(canonical.encode()).hexdigest()


def job_summary(job: Job) -> Answer:
    """What an agent needs of a job, with the video's URL lifted to the top."""
    return schemas.JobSummary.of(job).model_dump(mode="json")


def job_next_steps(job: Job) -> list[str]:
    if not job.status.is_final:
        return [f'{schemas.STATUS} {{"job_id": "{job.id}"}} again in 15-30 s']
    if job.status is PublicStatus.COMPLETED:
        return [
            "give the user video_url (a playable MP4)",
            f"{schemas.MEDIA_LIST} lists every finished video",
        ]
    if job.status is PublicStatus.FAILED:
        return [
            f"check the model's parameters with {schemas.MODELS}, then retry "
            f"{schemas.GENERATE} with a new intent_key (nothing was charged)"
        ]
    return [f"{schemas.GENERATE} with a new intent_key to try again"]


def api_error(failure: Failure, *, api_url: str) -> ToolError:
    """The API's error code and message, with the tool calls that recover from it."""
    error, steps = dict(failure.error), []
    match failure.code:
        case "insufficient_credits":
            steps += [
                f"preview cheaper options with {schemas.PRICING} (a shorter duration or a "
                "cheaper model)",
                "or ask the account owner to top up the credits",
            ]
        case "invalid_model":
            if suggestions := error.get("suggestions"):
                steps.append("did you mean: " + ", ".join(map(str, suggestions)) + "?")
            steps.append(f"{schemas.MODELS} lists the valid model ids")
        case "invalid_input":
            fields = error.get("fields")
            steps += _field_steps(fields if isinstance(fields, dict) else {})
        case "idempotency_conflict" | "conflict":
            steps.append(
                "this intent_key was used for a different request: resend the identical "
                "request, or use a new intent_key for a new video"
            )
        case "not_found":
            steps.append(f"check the job_id: it is the one {schemas.GENERATE} returned")
        case "not_cancellable":
            steps.append(f"{schemas.STATUS} shows the job's state")
        case "unauthorized":
            steps.append(
                "the MCP server's API key is missing or wrong: set NAIVE_API_KEY for the "
                "`naive mcp` process (the user must do this)"
            )
        case "rate_limited":
            wait = f"{failure.retry_after:g} s" if failure.retry_after is not None else "a moment"
            steps.append(f"retry the same call in {wait}")
        case "connection_error" | "timeout" | "invalid_api_url":
            steps.append(
                f"the Naive API at {api_url} is unreachable: retry in a minute; if it lasts, "
                "the user should check NAIVE_API_URL and that the API is running"
            )
        case _ if failure.exit_code is ExitCode.SERVICE_ERROR:
            steps.append("the service failed: retry the same call shortly")
    return ToolError(error, next_steps=steps)


def _field_steps(fields: Mapping[str, Any]) -> list[str]:
    """A step per bad field; the models' parameters for a model or input field, the tool's
    input schema for any other."""
    steps = [f"fix {name}: {problem}" for name, problem in fields.items()]
    model_fields = [name for name in fields if is_model_field(name)]
    if model_fields:
        steps.append(f"{schemas.MODELS} lists each model's parameters and allowed values")
    if len(model_fields) < len(fields) or not fields:
        steps.append("the tool's input schema lists each argument and its allowed values")
    return steps


def invalid_arguments(message: str, *, field: str) -> ToolError:
    return ToolError(
        {"code": "invalid_arguments", "message": message, "fields": {field: message}},
        next_steps=["fix the arguments (the tool's input schema describes them) and call again"],
    )


def _only(arguments: Mapping[str, Any], allowed: set[str]) -> None:
    if unknown := sorted(set(arguments) - allowed):
        names = ", ".join(sorted(allowed)) or "none"
        raise invalid_arguments(
            f"Unknown argument(s): {', '.join(unknown)}. Accepted: {names}.", field=unknown[0]
        )


def _string(arguments: Mapping[str, Any], name: str) -> str | None:
    value = arguments.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid_arguments(f"`{name}` must be a string.", field=name)
    return value


def _intent_key(arguments: Mapping[str, Any]) -> str | None:
    """The agent's `intent_key` (None without one), sent as the `Idempotency-Key`: checked
    here, as the API checks it, since httpx cannot even send a key that is not ASCII."""
    if "intent_key" not in arguments or arguments["intent_key"] is None:
        return None
    key = arguments["intent_key"]
    if not isinstance(key, str) or not valid_idempotency_key(key):
        raise invalid_arguments(f"`intent_key` {IDEMPOTENCY_KEY_RULE}.", field="intent_key")
    return key


def _required_string(arguments: Mapping[str, Any], name: str) -> str:
    value = _string(arguments, name)
    if value is None:
        hint = f" (there is no default; {schemas.MODELS} lists the ids)" if name == "model" else ""
        raise invalid_arguments(f"`{name}` is required{hint}.", field=name)
    return value


def _decimal(arguments: Mapping[str, Any], name: str) -> Decimal | None:
    value = arguments.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        number = Decimal(str(value))
    except (InvalidOperation, TypeError):
        raise invalid_arguments(f"`{name}` must be a number.", field=name) from None
    if not number.is_finite() or number < 0:
        raise invalid_arguments(f"`{name}` must be a number, 0 or more.", field=name)
    return number


def _integer(
    arguments: Mapping[str, Any], name: str, *, minimum: int, maximum: int | None = None
) -> int | None:
    value = arguments.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_arguments(f"`{name}` must be a whole number.", field=name)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
        raise invalid_arguments(f"`{name}` must be {bounds}.", field=name)
    return value


def _num(value: Decimal) -> str:
    """Credits for a message: 5, 3.5, 10 (no trailing zeros, no exponent)."""
    return f"{value.normalize():f}"


def _duration(value: Any) -> str | None:
    """A duration as the API's query string takes it: "5" for 5 or "5"."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)
