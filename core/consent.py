"""A key goes only where a profile the user configured sends it, or where they agreed once.

The built-in `openai` profile appears whenever OPENAI_API_KEY is set, and `p` cycles to
it. A user who set that variable for a compatible endpoint never meant it for
api.openai.com, so before a built-in profile sends a key anywhere the user is asked once,
naming the variable and the destination host. The answer is remembered per profile,
variable and destination (never the key) in an owner-only file in the config folder.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from urllib.parse import urlsplit

from .config import Profile
from .paths import AppPaths

CONSENT_FILE = "consent.json"
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


def destination(profile: Profile, environ: Mapping[str, str] | None = None) -> str:
    """The host a profile's requests (and key) go to. The SDK itself honours OPENAI_BASE_URL
    when no base URL is given, so that is where a built-in openai profile really sends it."""
    env = os.environ if environ is None else environ
    if profile.backend == "azure":
        url = profile.endpoint or ""
    else:
        url = profile.base_url or env.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL
    return urlsplit(url).netloc or url


def needs_consent(profile: Profile, paths: AppPaths, environ: Mapping[str, str] | None = None) -> str | None:
    """The question to ask before `profile` sends its key, or None when no question is due:
    a configured profile, a profile with no key to send, or one agreed to before."""
    if not profile.builtin or not profile.key_env or not profile.api_key(environ):
        return None
    if _record(profile, environ) in _agreed(paths):
        return None
    return (
        f"The built-in profile {profile.name!r} would send the key in ${profile.key_env} to "
        f"{destination(profile, environ)}. You did not configure this profile. Send the key there?"
    )


def give_consent(profile: Profile, paths: AppPaths, environ: Mapping[str, str] | None = None) -> None:
    """Remember that the user agreed (owner-only file, replaced atomically)."""
    agreed = sorted(_agreed(paths) | {_record(profile, environ)})
    path = paths.config_dir / CONSENT_FILE
    paths.config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"agreed": agreed}, out, indent=2)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _record(profile: Profile, environ: Mapping[str, str] | None) -> str:
    return f"{profile.name} ${profile.key_env} -> {destination(profile, environ)}"


def _agreed(paths: AppPaths) -> set[str]:
    try:
        data = json.loads((paths.config_dir / CONSENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()  # none yet, or unreadable: asking again is the safe side
    agreed = data.get("agreed") if isinstance(data, dict) else None
    return {item for item in agreed if isinstance(item, str)} if isinstance(agreed, list) else set()
