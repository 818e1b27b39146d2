"""Errors that mean "the user's input is wrong": the CLI prints them and exits with 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EbmError(Exception):
    """Bad input: a recipe, a file, a plugin or a command line. Printed without traceback."""


class RecipeError(EbmError):
    """One or more problems in a recipe, each as ``(path, message)``, all reported at once."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        self.source = source
        super().__init__(self.format())

    def format(self) -> str:
        head = f"{self.source}: " if self.source else ""
        n = len(self.problems)
        lines = [f"{head}{n} problem{'s' if n != 1 else ''} in recipe:"]
        lines += [f"  {path}: {msg}" for path, msg in self.problems]
        return "\n".join(lines)


class PluginError(EbmError):
    """A plugin conflict, an unknown component name, or a component that breaks its contract."""


class CheckpointError(EbmError):
    """A checkpoint or run directory that cannot be used."""


class Interrupted(Exception):
    """A run stopped by SIGINT or SIGTERM after checkpointing its last completed step."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class DivergenceError(RuntimeError):
    """Training produced a non-finite value; the last good checkpoint is kept."""


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


WHY_NO_PICKLE = ("ebm never loads pickle files: unpickling runs whatever code the file names. "
                 "Checkpoints are safetensors + JSON; to use weights you trust, load them yourself "
                 "with torch (weights_only=True) and write them with safetensors.torch.save_file")


def pickle_format(data: bytes) -> str | None:
    """What kind of pickle ``data`` (a file's bytes, or its first and last bytes) is, or None."""
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return f"a pickle (protocol {data[1]})"
    if data[:4] == b"PK\x03\x04":
        return "a zip archive (the format of torch.save)"
    if data[:1] in (b"(", b"}", b"]", b"c") and data.rstrip()[-1:] == b".":
        return "a pickle (protocol 0 or 1)"
    return None
