"""Every exception of the package that becomes a one-line reason (in the run report, a
usage error, an HTTP 400), and `describe`, which makes that line."""


class ConversionError(Exception):
    """An input that cannot be converted; the message is shown to the user as is."""


class NotDicomError(ConversionError):
    """The input is not a DICOM Part 10 file."""


class TruncatedError(ConversionError):
    """The input ends before an element it declares."""


class UnframeableError(ConversionError):
    """Pixel Data whose frames cannot be delimited (image attributes missing)."""


class InvalidUIDError(ValueError):
    """A UID that cannot be used as a path component."""


class QueryError(ValueError):
    """A query parameter that cannot be answered: sent back as 400."""


class NotRegularFile(OSError):
    """An input that is not a regular file (a FIFO, a device, ...): skipped, not read."""


class OptionError(ValueError):
    """Transform options that cannot be used: the run is refused as a usage error."""


class ResultNameError(ConversionError, ValueError):
    """A plugin asked for a folder or file name that could leave its folder."""


class TreeLinkError(OSError):
    """A symbolic link below the output root: writes never follow one out of the tree."""


def describe(exc: BaseException) -> str:
    """One line for an exception (a reason in the report, a warning line): our own
    errors by message, others with their type; a multi-line message joined with '; '."""
    text = str(exc) if isinstance(exc, ConversionError) else f"{type(exc).__name__}: {exc}"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


class PluginError(ConversionError):
    """A plugin's hook or transform raised: the reason names the plugin and the hook."""

    def __init__(self, plugin: str, hook: str, exc: BaseException, context: str = "") -> None:
        self.plugin, self.hook, self.detail = plugin, hook, describe(exc)
        where = f" ({context})" if context else ""
        super().__init__(f"plugin {plugin!r} failed in {hook}: {self.detail}{where}")
