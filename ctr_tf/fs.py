"""The one way ctr_tf touches files: TensorFlow's file systems (tf.io.gfile), so every path may be
local or on an object store TensorFlow reads (gs://, s3:// and hdfs:// with their plug-ins, and
its in-memory ram:// file system, which the tests use).

Publishing is atomic on local disks and HDFS, where a rename is; an object store has no directory
rename (TensorFlow copies each object, then deletes it), so a directory is published with its
marker file last (schema.json for converted data, saved_model.pb for an export), the file readers
key on, and a single file by a copy of a whole object, which readers see whole or not at all.
"""
from __future__ import annotations

import json
import os
import posixpath


def __getattr__(name):
    """`fs.tf`, imported on first use: importing this module (the markers of `pipelines.clean`,
    say) does not import TensorFlow."""
    if name == "tf":
        import tensorflow
        return tensorflow
    raise AttributeError(name)


class _LazyGfile:
    """tf.io.gfile, imported when first used."""

    def __getattr__(self, name):
        import tensorflow
        return getattr(tensorflow.io.gfile, name)


gfile = _LazyGfile()


def _errors():
    import tensorflow
    return tensorflow.errors


def is_local(path: str) -> bool:
    """Whether `path` is on the local file system (no URL scheme, or file://)."""
    return "://" not in str(path) or str(path).startswith("file://")


def local_path(path: str) -> str:
    return str(path)[len("file://"):] if str(path).startswith("file://") else str(path)


def join(*parts: str) -> str:
    if is_local(parts[0]):
        return os.path.join(*parts)
    return posixpath.join(*parts)


def dirname(path: str) -> str:
    return os.path.dirname(path) if is_local(path) else posixpath.dirname(str(path).rstrip("/"))


def basename(path: str) -> str:
    return os.path.basename(path) if is_local(path) else posixpath.basename(str(path).rstrip("/"))


def abspath(path: str) -> str:
    """An absolute local path, or a URL as it is."""
    return os.path.abspath(local_path(path)) if is_local(path) else str(path)


def open(path: str, mode: str = "r"):  # noqa: A001  (the module's open, as gfile's)
    return gfile.GFile(str(path), mode)


def exists(path: str) -> bool:
    return gfile.exists(str(path))


def isdir(path: str) -> bool:
    return gfile.isdir(str(path))


def isfile(path: str) -> bool:
    return gfile.exists(str(path)) and not gfile.isdir(str(path))


def makedirs(path: str) -> None:
    gfile.makedirs(str(path))


def listdir(path: str) -> list[str]:
    """Names in a directory (gfile gives sub-directories of object stores with a trailing '/')."""
    return [n.rstrip("/") for n in gfile.listdir(str(path))]


def glob(pattern: str) -> list[str]:
    return sorted(gfile.glob(str(pattern)))


def size(path: str) -> int:
    return gfile.stat(str(path)).length


def mtime_ns(path: str) -> int:
    return gfile.stat(str(path)).mtime_nsec


def remove(path: str) -> None:
    gfile.remove(str(path))


def rmtree(path: str, ignore_errors: bool = False) -> None:
    if not gfile.exists(str(path)):
        if ignore_errors:
            return
        raise _errors().NotFoundError(None, None, f"{path} does not exist")
    try:
        gfile.rmtree(str(path))
        return
    except _errors().OpError:
        pass
    # ram:// lists "a.b/x" under "a" as ".b/x", and its recursive delete stops at that entry:
    # the files that are there go first, then the tree.
    try:
        dirs = []
        for root, subdirs, names in gfile.walk(str(path)):
            dirs += [join(root, d) for d in subdirs]
            for n in names:
                p = join(root, n)
                if gfile.exists(p) and not gfile.isdir(p):
                    gfile.remove(p)
        for d in sorted(set(dirs), key=lambda d: (d.count("/"), d), reverse=True):  # deepest, "a.b" before "a"
            if gfile.exists(d):
                try:
                    gfile.rmtree(d)
                except _errors().NotFoundError:
                    pass
        if gfile.exists(str(path)):
            gfile.rmtree(str(path))
    except _errors().OpError:
        if not ignore_errors:
            raise


def rename(src: str, dst: str, overwrite: bool = True) -> None:
    """Moves a file or a directory. Atomic on local disks and HDFS; on object stores a copy of
    every object, then a delete."""
    if is_local(src) and is_local(dst):
        os.replace(local_path(src), local_path(dst)) if overwrite else os.rename(local_path(src), local_path(dst))
        return
    if gfile.isdir(str(src)):
        _rename_tree(str(src), str(dst))
    else:
        gfile.rename(str(src), str(dst), overwrite=overwrite)


def _rename_tree(src: str, dst: str) -> None:
    """A directory moved on a file system without directory renames: files copied, the root's
    saved_model.pb (if any) last, so a server polling for it never sees half a version, then the
    source removed."""
    files = []
    for root, _, names in gfile.walk(src):
        for n in names:
            path = join(root, n)
            if gfile.exists(path):  # ram:// lists "assets.extra/x" under "assets" too, as ".extra/x"
                files.append(path)
    root_pb = join(src, "saved_model.pb")
    files = sorted(set(files), key=lambda p: (p == root_pb, p))
    for path in files:
        rel = path[len(src.rstrip("/")) + 1:]
        target = join(dst, rel)
        gfile.makedirs(dirname(target))
        gfile.copy(path, target, overwrite=True)
    rmtree(src)


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    with open(path, "r") as f:
        return f.read()


def read_json(path: str):
    return json.loads(read_text(path))


def publish_file(path: str, data: bytes | str) -> str:
    """Writes a whole file so that a reader sees the old one or the new one, never half: a
    temporary file beside it, renamed into place (atomic on a local disk and HDFS; on an object
    store the rename is one copy of a whole object, which readers also see whole). Overwriting in
    place is not safe everywhere: ram:// appends to a file opened for writing."""
    mode = "wb" if isinstance(data, bytes) else "w"
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, mode) as f:
        f.write(data)
    rename(tmp, path)
    return path


def write_json(path: str, value, indent: int = 1) -> str:
    """JSON written whole or not at all (publish_file)."""
    return publish_file(path, json.dumps(value, indent=indent) + "\n")
