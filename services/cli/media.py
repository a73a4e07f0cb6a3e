"""`naive media`: browse the media library and download assets."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.text import Text

from services.cli import views
from services.cli.client import segment
from services.cli.hints import command, flags
from services.cli.state import State, json_option, pass_state
from services.cli.transfer import download, writable_output

if TYPE_CHECKING:
    from shared.media.schemas import MediaAsset


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
    from shared.media.schemas import MediaPage  # slow to import: only where used

    with state.action("media.list") as out:
        page = state.client.fetch(
            MediaPage,
            "/v1/media",
            {"source_type": source, "search": search, "limit": limit, "offset": offset},
        )
        next_steps = []
        seen = page.offset + len(page.data)
        if page.data and seen < page.total:
            filters = flags(("--source", source), ("--search", search), ("--limit", limit))
            next_steps.append(command("media", "list", *filters, "--offset", seen))
        if page.data:
            next_steps.append(command("media", "download", page.data[0].id))
        out.success(
            page.model_dump(mode="json"),
            view=lambda: views.media(page.data),
            next_steps=next_steps,
            hints=[f"{len(page.data)} of {page.total} assets."],
        )


@media.command("get")
@click.argument("asset_id")
@json_option
@pass_state
def get_media(state: State, asset_id: str) -> None:
    """Show one media asset."""
    from shared.media.schemas import MediaAsset

    with state.action("media.get") as out:
        asset = state.client.fetch(MediaAsset, f"/v1/media/{segment(asset_id)}")
        out.success(
            asset.model_dump(mode="json"),
            view=lambda: views.asset(asset),
            next_steps=[command("media", "download", asset_id)],
        )


@media.command("download")
@click.argument("asset_id")
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    type=click.Path(path_type=Path),
    callback=writable_output,
    help="Where to save it: a file, or a folder for the asset's filename (default: the "
    "asset's filename, in the current directory).",
)
@json_option
@pass_state
def download_media(state: State, asset_id: str, output: Path | None) -> None:
    """Download a media asset's file."""
    from shared.media.schemas import MediaAsset

    with state.action("media.download") as out:
        if output is None or output.is_dir():
            asset = state.client.fetch(MediaAsset, f"/v1/media/{segment(asset_id)}")
            output = (output or Path()) / local_name(asset, asset_id)
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


def local_name(asset: MediaAsset, asset_id: str) -> Path:
    """The server's filename as a bare name in the current directory, never a path elsewhere."""
    name = Path(asset.filename).name
    if name in ("", ".", ".."):
        extension = mimetypes.guess_extension(asset.content_type) or ""
        name = segment(asset_id) + extension
    return Path(name)
