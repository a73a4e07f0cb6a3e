"""Saving a remote file to disk: streamed, atomic, with a byte counter at a terminal."""

import os
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TransferSpeedColumn,
)

from services.cli.client import ApiClient
from services.cli.errors import ExitCode, Failure


def writable_output(
    _ctx: click.Context, _param: click.Parameter, value: Path | None
) -> Path | None:
    """An `--output FILE` callback: FILE's folder must exist and take new files (the file is
    written beside it first), checked before anything is submitted or charged. (That FILE is
    not a folder, `click.Path(dir_okay=False)` checks, where a folder is not accepted.)"""
    if value is None:
        return None
    folder = value if value.is_dir() else value.parent  # a folder: where the file goes
    if not folder.is_dir():
        raise click.BadParameter(f"cannot write {value}: folder {folder} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write {value}: folder {folder} is not writable.")
    return value


def download(client: ApiClient, url: str, dest: Path, *, console: Console | None) -> int:
    """Stream `url` into `dest` and return the bytes written.

    Bytes go to `dest.part` first and are renamed at the end, so `dest` is never half written.
    """
    partial = dest.with_name(dest.name + ".part")
    written = 0
    try:
        # The file first: one that cannot be written fails before any request is made.
        with partial.open("wb") as file, client.stream(url) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with Progress(
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=console,
                disable=console is None,
            ) as bar:
                task = bar.add_task(dest.name, total=total)
                for chunk in response.iter_bytes():
                    file.write(chunk)
                    written += len(chunk)
                    bar.update(task, advance=len(chunk))
        partial.replace(dest)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise Failure(
            {"code": "output_error", "message": f"Cannot write {dest}: {exc.strerror or exc}."},
            ExitCode.USER_ERROR,
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written
