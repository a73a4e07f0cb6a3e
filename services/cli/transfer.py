"""Saving a remote file to disk: streamed, atomic, with a byte counter at a terminal."""

from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TransferSpeedColumn,
)

from services.cli.client import ApiClient
from services.cli.errors import ExitCode, Failure


def download(client: ApiClient, url: str, dest: Path, *, console: Console | None) -> int:
    """Stream `url` into `dest` and return the bytes written.

    Bytes go to `dest.part` first and are renamed at the end, so `dest` is never half written.
    """
    partial = dest.with_name(dest.name + ".part")
    written = 0
    try:
        with client.stream(url) as response, partial.open("wb") as file:
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
