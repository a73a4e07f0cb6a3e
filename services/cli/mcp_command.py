"""`naive mcp`: serve the agent tools over the Model Context Protocol (stdio or HTTP)."""

import ipaddress
import re
import secrets
from decimal import Decimal

import click
from click.core import ParameterSource

from services.cli.numbers import CREDITS
from services.cli.state import State, pass_state

# The token guards a server that spends the account's credits: one short enough to guess is
# refused, not served. `secrets.token_urlsafe(32)`, the default, has 43 characters.
MIN_TOKEN_LENGTH = 16
VISIBLE_ASCII = re.compile(r"[!-~]+")


def _checked_token(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A token from --token or NAIVE_MCP_TOKEN: at least MIN_TOKEN_LENGTH visible ASCII
    characters (what an HTTP client can send after `Bearer `)."""
    if value is None:
        return None
    from_env = ctx.get_parameter_source(str(param.name)) is ParameterSource.ENVIRONMENT
    given = "the token from NAIVE_MCP_TOKEN" if from_env else "the token"
    if len(value) < MIN_TOKEN_LENGTH:
        raise click.BadParameter(
            f"{given} has {len(value)} characters; use at least {MIN_TOKEN_LENGTH} "
            "(e.g. $(openssl rand -hex 32)), or none for a random one printed at start.",
            ctx=ctx,
            param=param,
        )
    if not VISIBLE_ASCII.fullmatch(value):
        raise click.BadParameter(
            f"{given} must be visible ASCII characters, without spaces.", ctx=ctx, param=param
        )
    return value


@click.command(
    "mcp", short_help="Serve the agent tools over the Model Context Protocol (stdio or HTTP)."
)
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio for an agent that starts this process; http for streamable HTTP at /mcp.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="With --transport http. Any other than a loopback address serves the tools to the "
    "network over plain HTTP: put a TLS proxy in front.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="With --transport http.",
)
@click.option(
    "--token",
    metavar="TOKEN",
    envvar="NAIVE_MCP_TOKEN",
    show_envvar=True,
    help="With --transport http: the secret every client must send (Authorization: Bearer "
    "TOKEN); a request without it is answered 401. At least 16 visible ASCII characters. "
    "Default: a new random token, printed once at start.",
    callback=_checked_token,
)
@click.option(
    "--budget",
    metavar="CREDITS",
    envvar="NAIVE_MCP_BUDGET",
    show_envvar=True,
    type=CREDITS,
    help="Most credits the jobs submitted through this server may commit, all its MCP "
    "sessions and clients together (each job at its estimate until it ends, then at its "
    "charge: a failed or cancelled job commits nothing); a generation that would go over is "
    "refused before it is submitted. It lasts as long as the process. Default: no limit.",
)
@pass_state
def mcp(
    state: State, transport: str, host: str, port: int, token: str | None, budget: float | None
) -> None:
    """Serve the agent tools (naive_generate_video, naive_video_models, naive_video_status,
    naive_video_pricing, naive_media_list, naive_cancel_video) over the Model Context
    Protocol.

    A thin client of the same HTTP API as the other commands, with the same NAIVE_API_URL
    and NAIVE_API_KEY. Over HTTP the tools spend with that key, so each client must send
    the server's token (--token or NAIVE_MCP_TOKEN, else one printed at start) as
    `Authorization: Bearer TOKEN`.

    \b
    Examples:
      naive mcp                                   # stdio, for an agent that runs this command
      naive mcp --budget 20                       # refuse jobs past 20 credits in all
      naive mcp --transport http --port 8765      # streamable HTTP at http://127.0.0.1:8765/mcp
      NAIVE_MCP_TOKEN=$(openssl rand -hex 32) naive mcp --transport http   # a token of yours
    """
    # Imported here: the MCP SDK is heavy, and only this command needs it.
    from services.mcp_server.server import serve

    if not state.api_key:
        click.echo(
            "Warning: no API key (NAIVE_API_KEY or --api-key); every tool call will be refused.",
            err=True,
        )
    if transport == "http":
        token = token or _new_token()
        if not _is_loopback(host):
            click.echo(
                f"Warning: serving to the network on {host} over plain HTTP: the token and the "
                "traffic can be read on the way; put a TLS proxy in front.",
                err=True,
            )
    with state.action("mcp"):  # a key or URL no request can use: reported, not a traceback
        serve(
            api_url=state.api_url,
            api_key=state.api_key,
            transport=transport,
            host=host,
            port=port,
            token=token,
            budget=None if budget is None else Decimal(str(budget)),
        )


def _new_token() -> str:
    """A random token, shown once: the operator hands it to the MCP clients."""
    token = secrets.token_urlsafe(32)
    click.echo(
        f"MCP clients must send: Authorization: Bearer {token}\n"
        "(a new token each start; set NAIVE_MCP_TOKEN or --token to keep one)",
        err=True,
    )
    return token


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
