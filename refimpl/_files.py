"""Opening input files safely: regular files only, never echoing their content.

Rule (spec/reliability.md, "Special files"): every file refimpl reads (weights, configs, indexes,
vocabularies) must be a regular file once symlinks are followed. The check is made on the opened
descriptor (`os.fstat`), and the file is opened with O_NONBLOCK first, so a FIFO named
model.safetensors is refused at once instead of blocking until a writer appears; a directory, a
character or block device (/dev/zero, /dev/tty) or a socket is refused the same way with a one-line
error naming the path and what was found. Messages never quote bytes read from a file.
"""

import os
import stat

__all__ = ["open_regular", "require_regular", "file_kind"]


def file_kind(mode):
    """A word for the kind of file `mode` (an st_mode) describes."""
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return word
    return "a special file"


def open_regular(path, error, what="file"):
    """`path` opened for binary reading, only if it is a regular file (symlinks followed).

    error: the RefimplError subclass to raise; what: what the file should be ("a safetensors file").
    Raises error("<path>: cannot read: ...") for a missing or unreadable path and
    error("<path>: expected <what> (a regular file), found <kind>") for a special file.
    """
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path}: cannot read: no such file (expected {what})") from None
    except IsADirectoryError:
        raise error(f"{path}: expected {what}, found a directory") from None
    except OSError as exc:
        try:  # a socket (ENXIO) or another special file that cannot even be opened: say what it is
            mode = os.stat(path).st_mode
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            raise error(f"{path}: expected {what} (a regular file), found {file_kind(mode)}") from None
        raise error(f"{path}: cannot read: {exc.strerror or type(exc).__name__} (expected {what})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{path}: expected {what} (a regular file), found {file_kind(mode)}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def require_regular(path, error, what="file"):
    """os.stat(path) if `path` is a regular file (symlinks followed); error(...) otherwise.

    For paths handed to another library that opens them itself (a memory map, gguf's reader).
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: cannot read: no such file (expected {what})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or type(exc).__name__} (expected {what})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: expected {what} (a regular file), found {file_kind(st.st_mode)}")
    return st
