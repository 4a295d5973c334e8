"""Uploads: one large file sent in parts, assembled into a File when completed.

Each upload lives in `uploads/<upload id>/` under the data directory: `upload.json` (the
API object plus what completing needs) and `parts/<part id>` (each part's bytes). The
directory is the whole state, so an upload survives a restart of the backend within its
hour. Parts are deleted once an upload ends (completed, cancelled or expired); the small
record stays for a day so late calls get a clear "already completed" instead of a 404.

Ids in paths are checked against the shapes this backend generates before they touch
the filesystem. Every method runs on the event loop; `assemble` is the one slow part and
runs in an executor.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ApiError, bad_request, not_found
from .ids import random_text
from .private import open_private, private_dir, write_private

UPLOAD_LIFETIME_SECONDS = 3600
MAX_UPLOAD_BYTES = 8 * 2**30  # 8 GB per upload
MAX_PART_BYTES = 64 * 2**20  # 64 MB per part (the SDK's default part size is exactly this)
ENDED_RECORD_SECONDS = 24 * 3600
UPLOAD_ID = re.compile(r"upload_[A-Za-z0-9]{1,64}")
PART_ID = re.compile(r"part_[A-Za-z0-9]{1,64}")
RECORD_NAME = "upload.json"
COPY_CHUNK_BYTES = 1024 * 1024


def new_upload_id() -> str:
    return "upload_" + random_text(24)


def new_part_id() -> str:
    return "part_" + random_text(24)


@dataclass
class UploadRecord:
    upload: dict[str, Any]  # the Upload object as the API shows it
    mime_type: str
    file_expires_after: int | None  # seconds, for the File that completing creates

    @property
    def id(self) -> str:
        return self.upload["id"]

    @property
    def status(self) -> str:
        return self.upload["status"]


class UploadRegistry:
    def __init__(self, root: Path, clock: Callable[[], float]) -> None:
        self.root = root
        self._clock = clock
        self._completing: set[str] = set()  # uploads whose parts are being assembled right now
        private_dir(root)
        self.sweep()

    def now(self) -> int:
        return int(self._clock())

    # -- the upload's life ----------------------------------------------------------------------

    def create(self, size: int, filename: str, purpose: str, mime_type: str, file_expires_after: int | None) -> dict:
        self.sweep()
        created = self.now()
        upload = {
            "id": new_upload_id(),
            "object": "upload",
            "bytes": size,
            "created_at": created,
            "expires_at": created + UPLOAD_LIFETIME_SECONDS,
            "filename": filename,
            "purpose": purpose,
            "status": "pending",
            "file": None,
        }
        record = UploadRecord(upload, mime_type, file_expires_after)
        private_dir(self.root / record.id)
        private_dir(self._parts_dir(record.id))
        self._save(record)
        return upload

    def get(self, upload_id: str) -> UploadRecord:
        """The upload, expired first if its hour is over; 404 for ids it does not know."""
        record = self._load(upload_id) if UPLOAD_ID.fullmatch(upload_id) else None
        if record is None:
            raise not_found("Upload", upload_id[:100], param="upload_id")
        if self._past_its_hour(record):
            self._end(record, "expired")
        return record

    def pending(self, upload_id: str, action: str) -> UploadRecord:
        """The upload if it can still take `action` ("given parts", "completed", "cancelled")."""
        record = self.get(upload_id)
        if record.status == "expired":
            raise bad_request(
                f"Upload {record.id} has expired: an upload must be completed within an hour of being "
                f"created, so it can no longer be {action}. Start a new upload."
            )
        if record.status != "pending":
            raise bad_request(f"Upload {record.id} is already {record.status} and can no longer be {action}.")
        if record.id in self._completing:
            raise bad_request(f"Upload {record.id} is being completed and can no longer be {action}.")
        return record

    def cancel(self, upload_id: str) -> dict:
        record = self.pending(upload_id, "cancelled")
        self._end(record, "cancelled")
        return record.upload

    # -- parts ------------------------------------------------------------------------------------

    def incoming_part_path(self, upload_id: str) -> Path:
        """Where a part being received is written (renamed to its id once accepted)."""
        return self._parts_dir(upload_id) / f".incoming-{uuid.uuid4().hex}"

    def accept_part(self, upload_id: str, received: Path) -> dict:
        """Keep a fully received part; the upload may have ended while it streamed in."""
        try:
            self.pending(upload_id, "given parts")
        except ApiError:
            received.unlink(missing_ok=True)
            raise
        part_id = new_part_id()
        received.replace(self._parts_dir(upload_id) / part_id)
        return {"id": part_id, "object": "upload.part", "created_at": self.now(), "upload_id": upload_id}

    def ordered_parts(self, record: UploadRecord, part_ids: list[str]) -> list[Path]:
        """The part files in the order given; each id once, each a part of this upload."""
        paths: list[Path] = []
        seen: set[str] = set()
        for part_id in part_ids:
            path = self._parts_dir(record.id) / part_id if PART_ID.fullmatch(part_id) else None
            if path is None or not path.is_file():
                raise bad_request(f"Invalid 'part_ids': {part_id[:100]!r} is not a part of upload {record.id}.",
                                  param="part_ids")  # fmt: skip
            if part_id in seen:
                raise bad_request(f"Invalid 'part_ids': {part_id} is listed more than once.", param="part_ids")
            seen.add(part_id)
            paths.append(path)
        return paths

    def begin_completion(self, record: UploadRecord) -> None:
        self._completing.add(record.id)

    def end_completion(self, record: UploadRecord) -> None:
        self._completing.discard(record.id)

    def completed(self, record: UploadRecord, file: dict[str, Any]) -> dict:
        record.upload["file"] = file
        self._end(record, "completed")
        return record.upload

    # -- housekeeping -----------------------------------------------------------------------------

    def sweep(self) -> None:
        """Expire uploads whose hour is over, and forget long-ended ones (and broken leftovers)."""
        now = self.now()
        for folder in self.root.iterdir():
            record = self._load(folder.name) if UPLOAD_ID.fullmatch(folder.name) else None
            if record is None:
                shutil.rmtree(folder, ignore_errors=True)
            elif self._past_its_hour(record):
                self._end(record, "expired")
            elif record.status != "pending" and now >= record.upload["expires_at"] + ENDED_RECORD_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)

    def _past_its_hour(self, record: UploadRecord) -> bool:
        """Pending and past `expires_at`; one being assembled finishes first."""
        if record.status != "pending" or record.id in self._completing:
            return False
        return self.now() >= record.upload["expires_at"]

    def _end(self, record: UploadRecord, status: str) -> None:
        record.upload["status"] = status
        self._save(record)
        shutil.rmtree(self._parts_dir(record.id), ignore_errors=True)

    def _parts_dir(self, upload_id: str) -> Path:
        return self.root / upload_id / "parts"

    def _save(self, record: UploadRecord) -> None:
        body = {"upload": record.upload, "mime_type": record.mime_type, "file_expires_after": record.file_expires_after}
        write_private(self.root / record.id / RECORD_NAME, json.dumps(body).encode("utf-8"))

    def _load(self, upload_id: str) -> UploadRecord | None:
        try:
            body = json.loads((self.root / upload_id / RECORD_NAME).read_text(encoding="utf-8"))
            return UploadRecord(body["upload"], body["mime_type"], body["file_expires_after"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def assemble(parts: list[Path], out: Path) -> tuple[int, str]:
    """Concatenate `parts` into `out`; returns its size and MD5 (hex). Executor thread."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with open_private(out, exclusive=True) as sink:
        for part in parts:
            with part.open("rb") as source:
                while chunk := source.read(COPY_CHUNK_BYTES):
                    digest.update(chunk)
                    size += len(chunk)
                    sink.write(chunk)
    return size, digest.hexdigest()
