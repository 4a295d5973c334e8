"""The bytes behind the store: uploaded files and model weights, under the data directory.

Paths are always built from ids this backend generated (looked up in the store first),
never from a client's string, so a crafted id cannot reach outside the directory. Every
folder and file is owner-only (`private.py`).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from .private import open_private, private_dir


class Blobs:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.files_dir = data_dir / "files"
        self.incoming_dir = self.files_dir / ".incoming"
        self.models_dir = data_dir / "models"
        for folder in (self.files_dir, self.incoming_dir, self.models_dir):
            private_dir(folder)
        for leftover in self.incoming_dir.iterdir():  # uploads cut off by a crash
            leftover.unlink(missing_ok=True)

    def file_path(self, file_id: str) -> Path:
        return self.files_dir / file_id

    def new_incoming(self) -> Path:
        return self.incoming_dir / uuid.uuid4().hex

    def keep(self, incoming: Path, file_id: str) -> Path:
        final = self.file_path(file_id)
        incoming.replace(final)
        return final

    def write_file(self, file_id: str, data: bytes) -> None:
        incoming = self.new_incoming()
        try:
            with open_private(incoming, exclusive=True) as out:
                out.write(data)
        except BaseException:
            incoming.unlink(missing_ok=True)
            raise
        self.keep(incoming, file_id)

    def remove_file(self, file_id: str) -> None:
        self.file_path(file_id).unlink(missing_ok=True)

    def job_dir(self, job_id: str) -> Path:
        return private_dir(self.models_dir / job_id)

    def remove_job_dir(self, job_id: str) -> None:
        shutil.rmtree(self.models_dir / job_id, ignore_errors=True)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.data_dir).as_posix()
