"""The MCP server: the `mcp` SDK's low-level `Server` with our six tools, over stdio or HTTP.

The low-level server (rather than `MCPServer`'s decorators) because the schemas are data:
`naive_generate_video`'s `model` enum and `input` properties come from the live catalog.

Over HTTP every request must carry `Authorization: Bearer TOKEN`: the tools spend with the
operator's API key, so whoever can reach the port must not be able to use them. The check is
the SDK's own bearer authentication (a `TokenVerifier`), which answers 401 before any MCP
handling; the token is the operator's (`--token`), or made at start and printed once.
"""

from __future__ import annotations

import hmac
import json
import logging
from decimal import Decimal
from importlib.metadata import version
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.stdio import stdio_server
from pydantic import AnyHttpUrl

from services.cli.client import ApiClient
from services.mcp_server import schemas
from services.mcp_server.tools import Answer, NaiveTools, ToolError

logger = logging.getLogger(__name__)

MCP_SESSION_HEADER = "mcp-session-id"
# stdio serves one client per process; so does an HTTP client that keeps no session id.
PROCESS_SESSION = "process"
HTTP_CLIENT_ID = "naive-mcp-operator"


def build_server(tools: NaiveTools) -> Server[Any]:
    """A server whose tools call the API through `tools`."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=schemas.build_tools(await tools.catalog_or_none()))

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = params.arguments or {}
        try:
            answer = await _dispatch(tools, ctx, params.name, arguments)
        except ToolError as exc:
            logger.info("tool %s failed: %s", params.name, exc.error.get("code"))
            return _result(exc.payload(), is_error=True)
        return _result(answer, is_error=False)

    return Server(
        "naive-video",
        version=version("naive-video"),
        title="Naive Video",
        description="Generate videos with AI models; follow the jobs; browse the results.",
        instructions=schemas.INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def _dispatch(
    tools: NaiveTools, ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any]
) -> Answer:
    if name == schemas.GENERATE:

        async def progress(percent: float, status: str) -> None:
            # A no-op unless the client asked for progress (a progressToken).
            await ctx.session.report_progress(percent, 100, status)

        return await tools.generate_video(
            arguments, session_key=session_key(ctx), progress=progress
        )
    if name == schemas.MODELS:
        return await tools.video_models(arguments)
    if name == schemas.STATUS:
        return await tools.video_status(arguments)
    if name == schemas.PRICING:
        return await tools.video_pricing(arguments)
    if name == schemas.MEDIA_LIST:
        return await tools.media_list(arguments)
    if name == schemas.CANCEL:
        return await tools.cancel_video(arguments)
    raise ToolError(
        {
            "code": "unknown_tool",
            "message": f"Unknown tool {name!r}; the tools are {', '.join(schemas.TOOL_NAMES)}.",
        },
        next_steps=["list the tools again (tools/list) and call one of them"],
    )


def session_key(ctx: ServerRequestContext[Any]) -> str:
    """Which MCP session a call belongs to: the HTTP session id, else this process."""
    request = ctx.request
    headers = getattr(request, "headers", None)
    if headers is not None and (session_id := headers.get(MCP_SESSION_HEADER)):
        return f"http:{session_id}"
    return PROCESS_SESSION


def _result(answer: Answer, *, is_error: bool) -> types.CallToolResult:
    text = json.dumps(answer, indent=2, ensure_ascii=False, default=str)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=answer,
        is_error=is_error,
    )


def serve(
    *,
    api_url: str,
    api_key: str | None,
    transport: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    budget: Decimal | None = None,
) -> None:
    """Serve the tools until the client disconnects (stdio) or the process is stopped (HTTP);
    over HTTP, only to clients that send `token` as a bearer token."""
    client = ApiClient(api_url, api_key)
    try:
        server = build_server(NaiveTools(client, budget=budget))
        if transport == "stdio":
            anyio.run(_serve_stdio, server)
        else:
            assert token, "the HTTP transport needs a token"
            _serve_http(server, host, port, token)
    finally:
        client.close()


async def _serve_stdio(server: Server[Any]) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


class StaticTokenVerifier:
    """The SDK's `TokenVerifier` for one shared secret: the operator's token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        # Compared in constant time: how long a refusal takes tells nothing of the token.
        if not hmac.compare_digest(token.encode(), self._token):
            return None
        return AccessToken(token=token, client_id=HTTP_CLIENT_ID, scopes=[])


def _serve_http(server: Server[Any], host: str, port: int, token: str) -> None:
    """Streamable HTTP at http://HOST:PORT/mcp, under uvicorn, for bearers of `token`."""
    import uvicorn

    app = server.streamable_http_app(
        host=host,
        # The SDK requires an issuer, but serves and checks it only with an authorization
        # server or resource metadata, neither of which a static token has.
        auth=AuthSettings(
            issuer_url=AnyHttpUrl(f"http://127.0.0.1:{port}"), resource_server_url=None
        ),
        token_verifier=StaticTokenVerifier(token),
    )
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info")).run()
