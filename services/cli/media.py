"""`naive media`: browse the media library and download assets."""

import mimetypes
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from services.cli import views
from services.cli.client import segment
from services.cli.hints import command, flags
from services.cli.state import State, json_option, pass_state
from services.cli.transfer import download


@click.group()
@json_option
def media() -> None:
    """Browse your media library (finished videos land here); download files."""


@media.command("list")
@click.option(
    "--source", metavar="TYPE", help="Only assets from this source, e.g. video_generation."
)
@click.option("--search", metavar="TEXT", help="Only assets whose title or filename match.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N assets.")
@click.option("--offset", type=click.IntRange(min=0), metavar="N", help="Skip the first N.")
@json_option
@pass_state
def list_media(
    state: State, source: str | None, search: str | None, limit: int | None, offset: int | None
) -> None:
    """List media assets, newest first."""
    with state.action("media.list") as out:
        page = state.client.get(
            "/v1/media",
            {"source_type": source, "search": search, "limit": limit, "offset": offset},
        )
        data = page.get("data") or []
        next_steps = []
        seen = (page.get("offset") or 0) + len(data)
        if data and isinstance(page.get("total"), int) and seen < page["total"]:
            filters = flags(("--source", source), ("--search", search), ("--limit", limit))
            next_steps.append(command("media", "list", *filters, "--offset", seen))
        if data:
            next_steps.append(command("media", "download", data[0].get("id")))
        out.success(
            page,
            view=lambda: views.media(data),
            next_steps=next_steps,
            hints=[f"{len(data)} of {page.get('total', len(data))} assets."],
        )


@media.command("get")
@click.argument("asset_id")
@json_option
@pass_state
def get_media(state: State, asset_id: str) -> None:
    """Show one media asset."""
    with state.action("media.get") as out:
        asset = state.client.get(f"/v1/media/{segment(asset_id)}")
        out.success(
            asset,
            view=lambda: views.asset(asset),
            next_steps=[command("media", "download", asset_id)],
        )


@media.command("download")
@click.argument("asset_id")
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to save it (default: the asset's filename, in the current directory).",
)
@json_option
@pass_state
def download_media(state: State, asset_id: str, output: Path | None) -> None:
    """Download a media asset's file."""
    with state.action("media.download") as out:
        if output is None:
            output = _local_name(state.client.get(f"/v1/media/{segment(asset_id)}"), asset_id)
        size = download(
            state.client,
            f"/v1/media/{segment(asset_id)}/content",
            output,
            console=None if out.json_mode else out.console,
        )
        out.success(
            {"media_id": asset_id, "path": str(output.resolve()), "size_bytes": size},
            view=lambda: Text(f"Saved {views.file_size(size)} to {output}"),
        )


def _local_name(asset: dict[str, Any], asset_id: str) -> Path:
    """The server's filename as a bare name in the current directory, never a path elsewhere."""
    name = Path(str(asset.get("filename") or "")).name
    if name in ("", ".", ".."):
        extension = mimetypes.guess_extension(str(asset.get("content_type") or "")) or ""
        name = segment(asset_id) + extension
    return Path(name)
