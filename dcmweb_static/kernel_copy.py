"""Byte ranges copied from one open file into another by the kernel (`copy_file_range`:
the bytes never pass through this process), for the frame and bulk data copies
(`encode.multipart.PayloadCopier`) and a file given a new header
(`store.staging.StagingArea.spliced_file`). Where the kernel or the file systems cannot
(another file system, an old kernel) the caller copies through a bounded buffer instead:
`cannot_copy` tells that failure from a real one."""

from __future__ import annotations

import errno
import os

#: what `copy_file_range` fails with where it cannot copy these two files: not an error
#: of the data or the disk, only of the way
_NOT_HERE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


def copy_range(src_fd: int, dst_fd: int, offset: int, length: int) -> int:
    """Copy `length` bytes of `src_fd` from `offset` to `dst_fd`'s position; returns the
    bytes copied, fewer only where the source ends first. Raises OSError (see
    `cannot_copy`)."""
    done = 0
    while done < length:
        n = os.copy_file_range(src_fd, dst_fd, length - done, offset + done)
        if n == 0:
            break
        done += n
    return done


def cannot_copy(exc: OSError) -> bool:
    """Whether `exc` from `copy_range` means only that the kernel cannot copy here."""
    return exc.errno in _NOT_HERE
