"""The two output modes: rich views for a person, one JSON envelope for scripts and agents."""

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.padding import Padding
from rich.text import Text

# Commands whose JSON output is a stream of JSON lines: each item, then the envelope, each on
# one line, so a reader can parse the output line by line, however it ends (a failure, or a
# usage error before any item, included).
STREAMING_ACTIONS = frozenset({"jobs.watch"})


def wants_json(flag: bool) -> bool:
    """JSON when asked for, or whenever stdout is not a terminal."""
    return flag or not sys.stdout.isatty()


class Reporter:
    """Reports one command's outcome, as an envelope `{success, action, result, next_steps,
    hints}` in JSON mode, else as a rich view on stdout (failures on stderr)."""

    def __init__(self, action: str, *, json_mode: bool) -> None:
        self.action = action
        self.json_mode = json_mode
        self._indent = None if action in STREAMING_ACTIONS else 2
        self.console = Console()
        self._stderr = Console(stderr=True)

    def success(
        self,
        result: Any,
        *,
        view: Callable[[], RenderableType] | None = None,
        next_steps: Sequence[str] = (),
        hints: Sequence[str] = (),
    ) -> None:
        """Report success; `view` builds the rich rendering of `result` (human mode only)."""
        if self.json_mode:
            self._envelope(True, result, next_steps, hints)
            return
        if view is not None:
            # Not cropped to the terminal's width: a URL printed unwrapped must stay whole.
            self.console.print(view(), crop=False)
        self._advice(self.console, next_steps, hints)

    def failure(
        self,
        result: Any,
        *,
        message: str,
        next_steps: Sequence[str] = (),
        hints: Sequence[str] = (),
    ) -> None:
        """Report failure; `result` is the error object (or the job that failed)."""
        if self.json_mode:
            self._envelope(False, result, next_steps, hints)
            return
        self._stderr.print(Text.assemble(("Error: ", "bold red"), message))
        self._advice(self._stderr, next_steps, hints)

    def note(self, message: str) -> None:
        """A line of progress for a person; nothing in JSON mode, so the envelope stays alone."""
        if not self.json_mode:
            self.console.print(Text(message, style="dim"))

    def item(self, data: Any, *, view: Callable[[], RenderableType]) -> None:
        """One item of a stream before the envelope: a line of JSON for scripts (`data`),
        the rendering `view` builds for a person."""
        if self.json_mode:
            sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            self.console.print(view(), crop=False, soft_wrap=True)

    def _envelope(
        self, success: bool, result: Any, next_steps: Sequence[str], hints: Sequence[str]
    ) -> None:
        envelope = {
            "success": success,
            "action": self.action,
            "result": result,
            "next_steps": list(next_steps),
            "hints": list(hints),
        }
        sys.stdout.write(json.dumps(envelope, indent=self._indent, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    @staticmethod
    def _advice(console: Console, next_steps: Sequence[str], hints: Sequence[str]) -> None:
        for hint in hints:
            console.print(Padding(Text(hint, style="yellow"), (0, 0, 0, 2)))
        if next_steps:
            console.print(Text("Next:", style="bold"))
            for step in next_steps:
                console.print(Text(f"  $ {step}", style="cyan"), soft_wrap=True)
