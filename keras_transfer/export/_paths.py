"""Writing artifacts without ever losing the user's files.

Every export is written into a fresh temporary sibling of `path` (same parent
directory, so the final move is a rename on the same file system). Only after
the export and its parity check succeeded is it moved to `path`; an existing
artifact at `path` is replaced at that moment and not before. A failed export
removes its temporary sibling and leaves `path` as it was.
"""

import contextlib
import os
import shutil
import tempfile


def check_path(path, overwrite):
    """Refuse a non-empty existing `path` unless `overwrite=True`."""
    if path is None or not isinstance(path, (str, os.PathLike)):
        raise ValueError(
            "`path` must be a string or `os.PathLike` naming where to write the "
            f"artifact. Received: path={path!r}"
        )
    path = os.path.abspath(os.fspath(path))
    if _is_non_empty(path) and not overwrite:
        raise ValueError(
            f"`path` already exists and is not empty: {path!r}. Refusing to "
            "overwrite it. Pass `overwrite=True` to replace it (the old "
            "artifact is only replaced once the new one was written and passed "
            "its parity check), or choose another path."
        )
    return path


def _is_non_empty(path):
    if os.path.isdir(path):
        return bool(os.listdir(path))
    if os.path.lexists(path):
        return not os.path.isfile(path) or os.path.getsize(path) > 0
    return False


@contextlib.contextmanager
def staged(path):
    """Yield a temporary location next to `path`; move it there on success.

    The body of the `with` block writes the artifact to the yielded location
    and checks it. If the block raises, the temporary location is removed and
    `path` is untouched.
    """
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging_dir = tempfile.mkdtemp(
        prefix=f".{os.path.basename(path)}.tmp-", dir=parent
    )
    target = os.path.join(staging_dir, os.path.basename(path))
    try:
        yield target
        _replace(target, path, staging_dir)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)


def _replace(target, path, staging_dir):
    if not os.path.lexists(path):
        os.rename(target, path)
        return
    backup = os.path.join(staging_dir, "previous")
    os.rename(path, backup)
    try:
        os.rename(target, path)
    except BaseException:
        os.rename(backup, path)
        raise
    # `backup` is inside `staging_dir`, which the caller removes.


def artifact_size(path):
    """Bytes on disk of a file, or of all files under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total
