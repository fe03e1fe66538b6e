"""Exceptions that become a one-line, per-file reason in the run report."""


class ConversionError(Exception):
    """An input that cannot be converted; the message is shown to the user as is."""


class NotDicomError(ConversionError):
    """The input is not a DICOM Part 10 file."""


class TruncatedError(ConversionError):
    """The input ends before an element it declares."""


class UnframeableError(ConversionError):
    """Pixel Data whose frames cannot be delimited (image attributes missing)."""
