"""What a Modal image holds, read offline from the SDK's ``Image`` object (modal 1.6): its Dockerfile commands and
the local files it adds, so tests check the image the app defines rather than a copy of its definition.

An image is a chain of lazily loaded layers. In ``modal/_image.py`` each build step's loader (``_Image._from_args``)
closes over ``dockerfile_function`` (called with a builder version it returns the ``DockerfileSpec``: commands and the
context files they copy) and ``base_images``; each ``add_local_*`` layer (``_add_mount_layer_or_copy``) closes over
``mount`` (its entries: ``_MountFile``, ``_MountDir``, ``_MountedPythonModule``) and ``base_image``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from modal._utils.async_utils import synchronizer

BUILDER_VERSION = "2025.06"


@dataclass(frozen=True)
class Layer:
    commands: list[str] = field(default_factory=list)  # Dockerfile commands of a build step
    context_files: dict[str, str] = field(default_factory=dict)  # path in the build context -> local file
    entries: list[Any] = field(default_factory=list)  # the mount entries of an add_local_* layer


def _closure(function: Any) -> dict[str, Any]:
    cells = (cell.cell_contents for cell in function.__closure__ or ())
    return dict(zip(function.__code__.co_freevars, cells, strict=True))


def loader_scope(obj: Any) -> dict[str, Any]:
    """The arguments a lazily loaded Modal object (``Volume.from_name``, ``Secret.from_name``...) will be created
    with, as its loader holds them (e.g. ``version``, ``required_keys``)."""
    return _closure(synchronizer._translate_in(obj)._load)


def layers(image: Any) -> list[Layer]:
    """The image's layers, base first."""
    found: list[Layer] = []
    current = synchronizer._translate_in(image)
    while current is not None:
        scope = _closure(current._load)
        if "mount" in scope:
            found.append(Layer(entries=list(scope["mount"]._entries)))
            current = scope["base_image"]
            continue
        spec = scope["dockerfile_function"](BUILDER_VERSION) if scope.get("dockerfile_function") else None
        found.append(Layer(spec.commands, spec.context_files) if spec else Layer())
        bases = list((scope.get("base_images") or {}).values())
        assert len(bases) <= 1, "one base image per layer"
        current = bases[0] if bases else None
    return found[::-1]


def commands(image: Any) -> list[str]:
    return [command for layer in layers(image) for command in layer.commands]


def context_files(image: Any) -> dict[str, str]:
    return {name: path for layer in layers(image) for name, path in layer.context_files.items()}


def added_files(image: Any, under: str) -> dict[str, Path]:
    """The local files the image's add_local_file/add_local_dir layers put below ``under`` in the container:
    path relative to ``under`` -> local file (a directory's ignore patterns applied)."""
    files: dict[str, Path] = {}
    root = PurePosixPath(under)
    for layer in layers(image):
        for entry in (e for e in layer.entries if hasattr(e, "remote_path")):  # not the python source mounts
            remote = PurePosixPath(entry.remote_path)
            if root not in (remote, *remote.parents):
                continue
            if hasattr(entry, "local_file"):
                files[remote.relative_to(root).as_posix()] = Path(entry.local_file)
            elif hasattr(entry, "local_dir"):
                for path in sorted(Path(entry.local_dir).rglob("*")):
                    if path.is_file() and not entry.ignore(path.relative_to(entry.local_dir)):
                        rel = remote / path.relative_to(entry.local_dir).as_posix()
                        files[rel.relative_to(root).as_posix()] = path
    return files


def copy_added_files(image: Any, under: str, where: Path) -> Path:
    """A copy at ``where`` of exactly what the image adds below ``under`` (see :func:`added_files`)."""
    for rel, source in added_files(image, under).items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, where / rel)
    return where


def python_sources(image: Any, module: str) -> set[str]:
    """The files an ``add_local_python_source(module, ...)`` layer uploads, relative to the package's directory in
    the container (its ignore applied, as Modal's mount walks it)."""
    (entry,) = [e for layer in layers(image) for e in layer.entries if getattr(e, "module_name", None) == module]
    root = PurePosixPath(entry.remote_dir, *module.split("."))
    return {
        PurePosixPath(remote).relative_to(root).as_posix()
        for proxy in entry._proxy_entries()
        for _, remote in proxy.get_files_to_upload()
    }
