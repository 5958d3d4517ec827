"""How the stages word what went wrong: one line for the user, no traceback."""

from __future__ import annotations


class ImageDecodeError(ValueError):
    """A photo that cannot be decoded (corrupt, truncated, not an image): prepare and the reference stage count it
    as a named skip."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most ``limit`` characters.

    "no message" when there is none (torch.load of a zero-byte file raises ``EOFError('')``); a KeyError's
    own text, without the quotes ``str(KeyError)`` adds.
    """
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return str(text).partition("\n")[0][:limit] or "no message"


def load_error_text(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line. Torch's own text for a file holding
    pickled objects starts by offering to load it unsafely: never the advice to give about a file of unknown
    origin."""
    if "Weights only load failed" in str(exc):
        return "it holds pickled Python objects, which are never loaded here because they could run code"
    return f"{type(exc).__name__}: {first_line(exc)}"


def os_error_text(exc: OSError) -> str:
    """'<path>: <what the system said>' for a failed read or write, e.g. "/proc/x/g.zip: No such file or
    directory", then what to check."""
    what = exc.strerror or first_line(exc)
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{what}. Check that the path is right, its folder writable and the disk not full."


def error_text(exc: BaseException) -> str:
    """What a stage prints after "error: ": an operating-system error on a path as :func:`os_error_text`,
    anything else (the stages' own errors, which already say what to do) as it is."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return os_error_text(exc)
    return str(exc)
