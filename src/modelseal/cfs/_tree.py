"""The directory tree a mount shows: every file the signed manifest lists, and its parents."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelseal.errors import UsageError
from modelseal.licensing.durations import parse_datetime
from modelseal.package import FileEntry, Manifest

__all__ = ["Node", "Tree"]


@dataclass
class Node:
    """A directory (``entry`` is None) or a file of the package, by its mount path."""

    path: str
    entry: FileEntry | None = None
    index: int = -1
    children: list[str] = field(default_factory=list)

    @property
    def is_dir(self) -> bool:
        return self.entry is None

    @property
    def size(self) -> int:
        return 0 if self.entry is None else self.entry.size


class Tree:
    """Mount paths (``/``, ``/weights/big.bin``) to nodes; built once, read-only afterwards."""

    def __init__(self, manifest: Manifest) -> None:
        self.files: list[FileEntry] = list(manifest.files)
        self.mtime = _timestamp(manifest.created)
        self._nodes: dict[str, Node] = {"/": Node("/")}
        for index, entry in enumerate(self.files):
            parts = entry.path.split("/")
            parent = self._nodes["/"]
            for depth in range(1, len(parts)):
                path = "/" + "/".join(parts[:depth])
                node = self._nodes.get(path)
                if node is None:
                    node = self._nodes[path] = Node(path)
                    parent.children.append(parts[depth - 1])
                parent = node
            path = "/" + entry.path
            self._nodes[path] = Node(path, entry, index)
            parent.children.append(parts[-1])
        for node in self._nodes.values():
            node.children.sort()

    def get(self, path: str) -> Node | None:
        return self._nodes.get(path)

    def directories(self) -> int:
        return sum(1 for node in self._nodes.values() if node.is_dir)


def _timestamp(created: str) -> float:
    try:
        return parse_datetime(created).timestamp()
    except UsageError:
        return 0.0
