"""User-given paths: say what a path is, check outputs before any work, write them atomically.

Every command checks its output paths (``--json``, ``--report``, ``--out``) with
:func:`check_output_file` / :func:`check_output_dir` before it loads a model or a data set, so
a typo costs nothing; inputs that must be a file or a folder go through :func:`require_file` /
:func:`require_dir`, whose message says what the path actually is (a folder, a FIFO, a symlink
loop…) instead of "does not exist". Nothing here creates, moves or deletes anything.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from debiaskd.core.errors import DebiaskdError

FILE, DIR = "file", "dir"


def describe(path: str | Path) -> str:
    """What is at ``path``, as a phrase that completes "this path …"."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop (too many levels of symbolic links)"
        if exc.errno == errno.ENOTDIR:
            return f"does not exist (a parent, {_file_ancestor(Path(p))}, is a file, not a folder)"
        if exc.errno == errno.ENOENT:
            if os.path.lexists(p):
                return f"is a broken symbolic link (to {os.readlink(p)!s:.200})"
            return "does not exist"
        if exc.errno == errno.EACCES:
            return "cannot be inspected (permission denied)"
        return f"cannot be inspected ({exc.strerror})"
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return "is a folder"
    if stat.S_ISREG(mode):
        return "is a file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    return "is a special file"


def _file_ancestor(path: Path) -> str:
    for parent in path.parents:
        try:
            if parent.exists() and not parent.is_dir():
                return str(parent)
        except OSError:
            continue
    return "one of them"


def _kind_ok(path: Path, kind: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) if kind == DIR else stat.S_ISREG(st.st_mode)


def require_file(path: str | Path, what: str = "a file", rule: str = "file exists") -> Path:
    """``path`` if it is a regular file (symlinks followed); otherwise a DebiaskdError saying what it is."""
    p = Path(path)
    if not _kind_ok(p, FILE):
        raise DebiaskdError(f"this path {describe(p)}; expected {what}", file=str(p), rule=rule)
    return p


def require_dir(path: str | Path, what: str = "a folder", rule: str = "folder exists") -> Path:
    """``path`` if it is a folder (symlinks followed); otherwise a DebiaskdError saying what it is."""
    p = Path(path)
    if not _kind_ok(p, DIR):
        raise DebiaskdError(f"this path {describe(p)}; expected {what}", file=str(p), rule=rule)
    return p


def _writable_dir(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: permissions, then a nameless probe file (O_TMPFILE where
    the system has it) for what permissions do not show: a read-only file system, or root on /proc."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def _check_name_lengths(path: Path, base: Path, option: str, what: str) -> None:
    """The names ``path`` would create under the existing folder ``base`` fit the file system's limits
    (NAME_MAX per name, PATH_MAX in all): an over-long name would otherwise fail only at the final write,
    after the work was done."""
    try:
        name_max = os.pathconf(base, "PC_NAME_MAX")
        path_max = os.pathconf(base, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    new_parts = path.parts[len(base.parts):] if path.parts[:len(base.parts)] == base.parts else path.parts
    for part in new_parts:
        size = len(os.fsencode(part))
        if size > name_max:
            raise DebiaskdError(f"{option}: cannot create {what} here: the name {part[:60]!r}… is {size} bytes, "
                                f"longer than this file system allows ({name_max})", file=str(path),
                                rule="writable output")
    if len(os.fsencode(os.path.abspath(path))) >= path_max:
        raise DebiaskdError(f"{option}: cannot create {what} here: the path is longer than this file system "
                            f"allows ({path_max} bytes)", file=str(path), rule="writable output")


def _check_creatable(path: Path, option: str, what: str) -> None:
    """``path`` is absent: its nearest existing ancestor must be a writable folder, and the names to create
    must fit the file system."""
    for parent in path.parents:
        try:
            st = os.stat(parent)
        except FileNotFoundError as exc:
            if os.path.lexists(parent):  # a broken symbolic link: the folder could not be created there
                raise DebiaskdError(f"{option}: cannot create {what} here: {parent} {describe(parent)}",
                                    file=str(path), rule="writable output") from exc
            continue
        except OSError as exc:
            raise DebiaskdError(f"{option}: cannot create {what} here: {parent} {describe(parent)}",
                                file=str(path), rule="writable output") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise DebiaskdError(f"{option}: cannot create {what} here: {parent} {describe(parent)}, "
                                "not a folder", file=str(path), rule="writable output")
        if not _writable_dir(parent):
            raise DebiaskdError(f"{option}: cannot create {what} here: the folder {parent} is not writable",
                                file=str(path), rule="writable output")
        _check_name_lengths(path, parent, option, what)
        return


def check_output_file(path: str | Path | None, option: str) -> Path | None:
    """Check, writing nothing, that ``path`` can become a file: absent or a writable regular file."""
    if path is None:
        return None
    p = Path(path)
    if os.path.basename(os.path.normpath(str(path))) in ("", ".", "..") or str(path).endswith(("/..", "/.")):
        raise DebiaskdError(f"{option}: this path ends in '.' or '..', which names a folder; expected a file "
                            "name", file=str(path), rule="writable output")
    if os.path.lexists(p) or os.path.exists(p):
        if not _kind_ok(p, FILE):
            raise DebiaskdError(f"{option}: this path {describe(p)}; expected a file to write (or a new path)",
                                file=str(p), rule="writable output")
        if not os.access(p, os.W_OK) or not _writable_dir(p.resolve().parent):
            raise DebiaskdError(f"{option}: this file (or its folder) is not writable", file=str(p),
                                rule="writable output")
        return p
    _check_creatable(p, option, "a file")
    return p


def check_output_dir(path: str | Path | None, option: str) -> Path | None:
    """Check, writing nothing, that ``path`` can hold outputs: absent, or a writable folder."""
    if path is None:
        return None
    p = Path(path)
    if os.path.lexists(p) or os.path.exists(p):
        if not _kind_ok(p, DIR):
            raise DebiaskdError(f"{option}: this path {describe(p)}; expected an output folder (or a new path)",
                                file=str(p), rule="writable output")
        if not _writable_dir(p):
            raise DebiaskdError(f"{option}: this folder is not writable", file=str(p), rule="writable output")
        return p
    _check_creatable(p, option, "a folder")
    return p


def check_replaceable_dir(path: str | Path, option: str, owned: set[str] | None) -> Path:
    """A folder debiaskd may replace as a whole: absent, empty, or holding only ``owned`` names.

    ``owned`` is the set of names the previous debiaskd write left there (from its manifest);
    ``None`` means the folder is not one debiaskd wrote. Anything else is refused, so a
    replacement never deletes a file the user put there.
    """
    p = Path(path)
    check_output_dir(p, option)
    if not os.path.isdir(p):
        return p
    try:
        names = sorted(os.listdir(p))
    except OSError as exc:
        raise DebiaskdError(f"{option}: cannot list this folder ({exc.strerror})", file=str(p),
                            rule="writable output") from exc
    if not names:
        return p
    if owned is None:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise DebiaskdError(f"{option}: this folder is not empty and is not a data set debiaskd wrote (no valid "
                            f"manifest.json; it holds {shown}); refusing to replace it: give a new or empty folder",
                            file=str(p), rule="output not owned")
    extra = [n for n in names if n not in owned]
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise DebiaskdError(f"{option}: this data set folder also holds files its manifest does not list ({shown}); "
                            "refusing to replace it: move them away or give a new folder",
                            file=str(p), rule="output not owned")
    return p


def write_text_atomic(path: str | Path, text: str, option: str = "output") -> Path:
    """Write ``text`` to ``path`` via a temporary sibling and a rename: never half-written."""
    p = Path(path)
    check_output_file(p, option)
    tmp = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, p)
        tmp = None
    except OSError as exc:
        raise DebiaskdError(f"{option}: cannot write this file ({exc.strerror})", file=str(p),
                            rule="writable output") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return p
