#!/usr/bin/env python3
"""A FUSE file system that forgets at a power cut what was not synced (the idea of LazyFS).

Usage: lazyfs.py DISK MOUNTPOINT

DISK is a directory that plays the disk: it holds the durable image and nothing else. Everything
the file system is asked to do (create, write, truncate, mkdir, rename, unlink) changes only the
state held in this process's memory, like a page cache that never writes back on its own. Only
these make something durable, i.e. copy it to DISK:

- fsync or fdatasync of a file: its data and size (both flavours persist the size, as
  fdatasync must for the data to be readable). Its name is not made durable.
- fsync of a directory: its entries as they are now (names created, renamed or removed in it).
  A new file or directory has no durable name until its parent directory is fsynced, and a
  directory created by mkdir has no durable name until its own parent is fsynced.

The power cut is SIGKILL of this process: the memory goes, DISK stays. Mounting DISK again
(after `fusermount3 -u -z MOUNTPOINT`) shows exactly the durable state: the files reachable
from the root through durable entries, each with its last synced data (empty if never synced).
This is stricter than ext4, where an fsync of a new file usually carries its name along, and
matches what POSIX promises.

Runs in the foreground (multithreaded, one lock for all state); the kernel keeps no cache
across a remount, and nothing else writes to DISK, so the kernel's caches within one mount
agree with this process.

DISK layout: data/<ino> holds a file's durable bytes, dirs/<ino>.json a directory's durable
entries {name: [ino, "f"|"d", mode]}; the root is inode 1.
"""

import errno
import json
import os
import stat
import sys
import threading
import time

try:
    import fuse as fusepy  # the upstream module name (pip)
except ImportError:  # pragma: no cover - depends on the distribution
    import fusepy  # Debian's python3-fusepy renames it

ROOT = 1


class Inode:
    __slots__ = ("ino", "kind", "mode", "data", "entries", "dirty_lo", "mtime_ns", "ctime_ns")

    def __init__(self, ino, kind, mode):
        self.ino = ino
        self.kind = kind  # "f" or "d"
        self.mode = mode & 0o7777
        self.data = bytearray() if kind == "f" else None
        self.entries = {} if kind == "d" else None
        # Files: the lowest offset changed since the last sync (None: clean).
        self.dirty_lo = None
        now = time.time_ns()
        self.mtime_ns = now
        self.ctime_ns = now

    def touch(self):
        now = time.time_ns()
        self.mtime_ns = now
        self.ctime_ns = now


def fail(code):
    raise fusepy.FuseOSError(code)


class LazyFS:
    use_ns = True

    def __init__(self, disk):
        self.disk = disk
        self.lock = threading.Lock()
        self.inodes = {}
        self.handles = {}
        self.next_fh = 1
        os.makedirs(os.path.join(disk, "data"), exist_ok=True)
        os.makedirs(os.path.join(disk, "dirs"), exist_ok=True)
        self.load()

    # ---- the disk ------------------------------------------------------------------------

    def load(self):
        """Rebuilds memory from the durable image: what a mount after a power cut sees."""
        highest = ROOT
        for name in os.listdir(os.path.join(self.disk, "data")):
            if name.isdigit():
                highest = max(highest, int(name))
        for name in os.listdir(os.path.join(self.disk, "dirs")):
            if name.endswith(".json") and name[:-5].isdigit():
                highest = max(highest, int(name[:-5]))
        self.inodes[ROOT] = Inode(ROOT, "d", 0o755)
        todo = [ROOT]
        while todo:
            d = self.inodes[todo.pop()]
            path = os.path.join(self.disk, "dirs", f"{d.ino}.json")
            if not os.path.exists(path):
                continue
            with open(path, encoding="utf-8") as f:
                entries = json.load(f)
            for name, (ino, kind, mode) in entries.items():
                highest = max(highest, ino)
                node = self.inodes.get(ino)
                if node is None:
                    node = Inode(ino, kind, mode)
                    self.inodes[ino] = node
                    if kind == "d":
                        todo.append(ino)
                    else:
                        try:
                            with open(os.path.join(self.disk, "data", str(ino)), "rb") as f:
                                node.data = bytearray(f.read())
                        except FileNotFoundError:
                            pass
                d.entries[name] = ino
        # Inode numbers of files that never got a durable name are never reused: their data
        # files would otherwise show through a new file's name.
        self.next_ino = highest + 1

    def persist_file(self, node):
        if node.dirty_lo is None:
            return
        fd = os.open(os.path.join(self.disk, "data", str(node.ino)), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            lo = node.dirty_lo
            view = memoryview(node.data)[lo:]
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], lo + done)
            os.ftruncate(fd, len(node.data))
        finally:
            os.close(fd)
        node.dirty_lo = None

    def persist_dir(self, node):
        entries = {}
        for name, ino in node.entries.items():
            child = self.inodes[ino]
            entries[name] = [ino, child.kind, child.mode]
        path = os.path.join(self.disk, "dirs", f"{node.ino}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(entries, f)
        # Atomic against this process's own SIGKILL: the image is either the old or the new.
        os.replace(path + ".tmp", path)

    # ---- lookups -------------------------------------------------------------------------

    def resolve(self, path):
        node = self.inodes[ROOT]
        for part in path.split("/"):
            if not part:
                continue
            if node.kind != "d":
                fail(errno.ENOTDIR)
            ino = node.entries.get(part)
            if ino is None:
                fail(errno.ENOENT)
            node = self.inodes[ino]
        return node

    def parent_of(self, path):
        head, name = os.path.split(path.rstrip("/"))
        parent = self.resolve(head or "/")
        if parent.kind != "d":
            fail(errno.ENOTDIR)
        if not name:
            fail(errno.EINVAL)
        return parent, name

    def node_for(self, path, fh):
        if fh is not None and fh in self.handles:
            return self.inodes[self.handles[fh]]
        if path is None:
            fail(errno.EBADF)
        return self.resolve(path)

    def new_handle(self, node):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node.ino
        return fh

    def new_node(self, parent, name, kind, mode):
        node = Inode(self.next_ino, kind, mode)
        self.next_ino += 1
        self.inodes[node.ino] = node
        parent.entries[name] = node.ino
        parent.touch()
        return node

    # ---- fusepy operations ---------------------------------------------------------------

    def __call__(self, op, *args):
        with self.lock:
            return getattr(self, op)(*args)

    def init(self, path):
        return 0

    def destroy(self, path):
        return 0

    def getattr(self, path, fh=None):
        node = self.node_for(path, fh)
        if node.kind == "d":
            mode = stat.S_IFDIR | node.mode
            nlink = 2 + sum(1 for i in node.entries.values() if self.inodes[i].kind == "d")
            size = 4096
        else:
            mode = stat.S_IFREG | node.mode
            nlink = 1
            size = len(node.data)
        return {
            "st_mode": mode,
            "st_nlink": nlink,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_uid": os.getuid(),
            "st_gid": os.getgid(),
            "st_atime": node.mtime_ns,
            "st_mtime": node.mtime_ns,
            "st_ctime": node.ctime_ns,
        }

    def access(self, path, amode):
        self.resolve(path)
        return 0

    def statfs(self, path):
        s = os.statvfs(self.disk)
        return {k: getattr(s, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree",
                                             "f_bavail", "f_files", "f_ffree", "f_favail",
                                             "f_namemax")}

    def mkdir(self, path, mode):
        parent, name = self.parent_of(path)
        if name in parent.entries:
            fail(errno.EEXIST)
        self.new_node(parent, name, "d", mode)
        return 0

    def rmdir(self, path):
        parent, name = self.parent_of(path)
        node = self.resolve(path)
        if node.kind != "d":
            fail(errno.ENOTDIR)
        if node.entries:
            fail(errno.ENOTEMPTY)
        del parent.entries[name]
        parent.touch()
        return 0

    def unlink(self, path):
        parent, name = self.parent_of(path)
        node = self.resolve(path)
        if node.kind == "d":
            fail(errno.EISDIR)
        del parent.entries[name]
        parent.touch()
        return 0

    def rename(self, old, new):
        old_parent, old_name = self.parent_of(old)
        new_parent, new_name = self.parent_of(new)
        node = self.resolve(old)
        target = new_parent.entries.get(new_name)
        if target is not None and target != node.ino:
            t = self.inodes[target]
            if t.kind == "d" and (node.kind != "d" or t.entries):
                fail(errno.EISDIR if node.kind != "d" else errno.ENOTEMPTY)
            if t.kind != "d" and node.kind == "d":
                fail(errno.ENOTDIR)
        del old_parent.entries[old_name]
        new_parent.entries[new_name] = node.ino
        old_parent.touch()
        new_parent.touch()
        return 0

    def link(self, target, source):
        fail(errno.EPERM)

    def symlink(self, target, source):
        fail(errno.EPERM)

    def chmod(self, path, mode):
        node = self.resolve(path)
        node.mode = mode & 0o7777
        node.ctime_ns = time.time_ns()
        return 0

    def chown(self, path, uid, gid):
        return 0

    def utimens(self, path, times=None):
        node = self.resolve(path)
        node.mtime_ns = times[1] if times else time.time_ns()
        return 0

    def create(self, path, mode):
        parent, name = self.parent_of(path)
        ino = parent.entries.get(name)
        node = self.inodes[ino] if ino is not None else self.new_node(parent, name, "f", mode)
        if node.kind != "f":
            fail(errno.EISDIR)
        return self.new_handle(node)

    def open(self, path, flags):
        node = self.resolve(path)
        if node.kind != "f":
            fail(errno.EISDIR)
        if flags & os.O_TRUNC and node.data:
            self.truncate_node(node, 0)
        return self.new_handle(node)

    def release(self, path, fh):
        self.handles.pop(fh, None)
        return 0

    def flush(self, path, fh):
        return 0

    def read(self, path, size, offset, fh):
        node = self.node_for(path, fh)
        return bytes(node.data[offset:offset + size])

    def write(self, path, data, offset, fh):
        node = self.node_for(path, fh)
        end = offset + len(data)
        old = len(node.data)
        if offset > old:
            node.data.extend(bytes(offset - old))
        node.data[offset:end] = data
        lo = min(offset, old)
        node.dirty_lo = lo if node.dirty_lo is None else min(node.dirty_lo, lo)
        node.touch()
        return len(data)

    def truncate_node(self, node, length):
        old = len(node.data)
        if length < old:
            del node.data[length:]
        elif length > old:
            node.data.extend(bytes(length - old))
        lo = min(length, old)
        node.dirty_lo = lo if node.dirty_lo is None else min(node.dirty_lo, lo)
        node.touch()

    def truncate(self, path, length, fh=None):
        node = self.node_for(path, fh)
        if node.kind != "f":
            fail(errno.EISDIR)
        self.truncate_node(node, length)
        return 0

    def fsync(self, path, datasync, fh):
        node = self.node_for(path, fh)
        if node.kind == "f":
            self.persist_file(node)
        return 0

    def opendir(self, path):
        node = self.resolve(path)
        if node.kind != "d":
            fail(errno.ENOTDIR)
        return self.new_handle(node)

    def releasedir(self, path, fh):
        self.handles.pop(fh, None)
        return 0

    def readdir(self, path, fh):
        node = self.node_for(path, fh)
        return [".", ".."] + list(node.entries)

    def fsyncdir(self, path, datasync, fh):
        node = self.node_for(path, fh)
        if node.kind == "d":
            self.persist_dir(node)
        return 0


def main():
    if len(sys.argv) != 3:
        print("usage: lazyfs.py DISK MOUNTPOINT", file=sys.stderr)
        return 2
    disk, mountpoint = sys.argv[1], sys.argv[2]
    ops = LazyFS(disk)
    # Only the operations LazyFS defines are registered: locks (flock of portcullis.lock) stay
    # in the kernel, and anything else answers ENOSYS.
    fusepy.FUSE(ops, mountpoint, foreground=True, nothreads=False, fsname="lazyfs",
                default_permissions=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
