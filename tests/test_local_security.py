"""Who may use the local backend: the per-install API key (through the unmodified `openai`
SDK and raw HTTP), web pages (Origin, CORS, text/plain "simple requests"), DNS rebinding
(the Host header), and owner-only files for everything it keeps."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from raw_http import FORM_TYPE, auth, form, form_part, path_of, request

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend, api_key_file, load_or_create_api_key
from tunedeck.backend.http.guard import MISSING_KEY_MESSAGE, RequestGuard, mask_key
from tunedeck.backend.local_backend import _access_notices

TRAIN = "".join(
    json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}) + "\n"
    for i in range(12)
).encode()


@contextlib.asynccontextmanager
async def started(tmp_path: Path, **options):
    backend = LocalBackend(tmp_path / "guarded", auto_advance=False, **options)
    await backend.start_async()
    try:
        yield backend
    finally:
        await backend.stop_async()


# -- the key ---------------------------------------------------------------------------------------


def test_the_key_is_made_once_owner_only_and_recognisable(tmp_path):
    data_dir = tmp_path / "data"
    key = load_or_create_api_key(data_dir)
    assert re.fullmatch(r"tdk-[A-Za-z0-9_-]{40,}", key)
    assert load_or_create_api_key(data_dir) == key  # read back, not made again
    assert api_key_file(data_dir) == data_dir / "api-key"
    assert api_key_file(data_dir).read_text().strip() == key
    assert stat.S_IMODE(api_key_file(data_dir).stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert load_or_create_api_key(tmp_path / "other") != key  # per install


def test_a_backend_uses_the_key_file_or_the_key_it_is_given(tmp_path):
    assert LocalBackend(tmp_path / "a").api_key == load_or_create_api_key(tmp_path / "a")
    assert LocalBackend(tmp_path / "b", api_key="my-own-key").api_key == "my-own-key"
    assert not api_key_file(tmp_path / "b").exists()


@pytest.mark.parametrize("key", ["", "two words", "line\nbreak"])
def test_there_is_no_way_to_run_without_a_key(tmp_path, key):
    with pytest.raises(ValueError, match="api_key"):
        LocalBackend(tmp_path / "b", api_key=key)
    with pytest.raises(ValueError):
        RequestGuard("")


async def test_the_sdk_with_the_key_works_and_without_it_gets_openais_401(backend, client):
    assert await anext(m.id async for m in client.models.list()) == BUILTIN_BASE_MODEL

    keyless = openai.AsyncOpenAI(base_url=backend.base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as missing:  # the SDK's way to send no key at all
        await keyless.models.list(extra_headers={"Authorization": openai.Omit()})
    assert missing.value.status_code == 401 and missing.value.code is None
    assert missing.value.body["message"].startswith("You didn't provide an API key.")

    wrong = openai.AsyncOpenAI(base_url=backend.base_url, api_key="sk-wrong-key-123456", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as incorrect:
        await wrong.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file="file-x")
    assert incorrect.value.code == "invalid_api_key" and incorrect.value.type == "invalid_request_error"
    assert incorrect.value.body["message"].startswith(f"Incorrect API key provided: sk-{'*' * 12}3456.")
    assert backend.api_key not in incorrect.value.message
    for sdk in (keyless, wrong):
        await sdk.close()


async def test_raw_requests_get_the_exact_envelope(backend):
    missing = await request(backend.base_url, "GET", path_of(backend.base_url, "/models"))
    assert missing.status == 401 and missing.headers["x-request-id"].startswith("req_")
    expected = {"message": MISSING_KEY_MESSAGE, "type": "invalid_request_error", "param": None, "code": None}
    assert missing.json() == {"error": expected}
    assert MISSING_KEY_MESSAGE.startswith(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
        "auth (i.e. Authorization: Bearer YOUR_KEY)."
    )

    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer    "):
        answer = await request(backend.base_url, "GET", path_of(backend.base_url, "/models"), {"Authorization": header})
        assert answer.status == 401 and answer.error["code"] is None

    almost = backend.api_key[:-1] + ("x" if backend.api_key[-1] != "x" else "y")
    wrong = await request(
        backend.base_url, "GET", path_of(backend.base_url, "/files"), {"Authorization": f"Bearer {almost}"}
    )
    assert wrong.status == 401 and wrong.error["code"] == "invalid_api_key" and wrong.error["param"] is None
    assert wrong.error["message"].startswith(f"Incorrect API key provided: {mask_key(almost)}. ")

    # Unknown URLs are not revealed to strangers either.
    stranger = await request(backend.base_url, "GET", path_of(backend.base_url, "/nowhere"))
    assert stranger.status == 401
    ok = await request(backend.base_url, "GET", path_of(backend.base_url, "/models"), auth(backend))
    assert ok.status == 200 and ok.json()["data"][0]["id"] == BUILTIN_BASE_MODEL


def test_a_wrong_key_is_shown_masked():
    assert mask_key("sk-abcdefghijklmnop1234") == "sk-" + "*" * 16 + "1234"
    assert mask_key("short") == "*****"


# -- web pages -------------------------------------------------------------------------------------


async def test_requests_from_web_pages_are_refused(backend, client):
    job = await _job(client)
    models = path_of(backend.base_url, "/models")
    page = await request(backend.base_url, "GET", models, auth(backend, Origin="https://evil.example"))
    assert page.status == 403 and page.error["code"] == "origin_not_allowed"
    assert "https://evil.example" in page.error["message"]
    assert "access-control-allow-origin" not in page.headers

    preflight = await request(
        backend.base_url,
        "OPTIONS",
        path_of(backend.base_url, f"/fine_tuning/jobs/{job.id}/cancel"),
        {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 403 and "access-control-allow-origin" not in preflight.headers

    # What a cross-site form or fetch() "simple request" can send: no key, text/plain.
    cancel = path_of(backend.base_url, f"/fine_tuning/jobs/{job.id}/cancel")
    simple = await request(backend.base_url, "POST", cancel, {"Content-Type": "text/plain", "Origin": "null"})
    assert simple.status == 403
    assert (await client.fine_tuning.jobs.retrieve(job.id)).status != "cancelled"


async def test_bodiless_posts_need_the_json_content_type_that_the_sdk_sends(backend, client):
    job = await _job(client)
    cancel = path_of(backend.base_url, f"/fine_tuning/jobs/{job.id}/cancel")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = auth(backend) if content_type is None else auth(backend, **{"Content-Type": content_type})
        refused = await request(backend.base_url, "POST", cancel, headers)
        assert refused.status == 415 and "application/json" in refused.error["message"]
        assert refused.error["type"] == "invalid_request_error"
    assert (await client.fine_tuning.jobs.retrieve(job.id)).status != "cancelled"

    create = path_of(backend.base_url, "/fine_tuning/jobs")
    body = json.dumps({"model": BUILTIN_BASE_MODEL, "training_file": job.training_file}).encode()
    as_text = await request(backend.base_url, "POST", create, auth(backend, **{"Content-Type": "text/plain"}), body)
    assert as_text.status == 415

    # The SDK sends `Content-Type: application/json` with an empty body: that works.
    assert (await client.fine_tuning.jobs.cancel(job.id)).status == "cancelled"


async def test_multipart_uploads_keep_their_own_content_type(backend):
    body = form(form_part(b'name="purpose"', b"fine-tune"), form_part(b'name="file"; filename="t.jsonl"', TRAIN))
    answer = await request(
        backend.base_url,
        "POST",
        path_of(backend.base_url, "/files"),
        auth(backend, **{"Content-Type": FORM_TYPE}),
        body,
    )
    assert answer.status == 200 and answer.json()["bytes"] == len(TRAIN)


async def test_an_allowed_origin_gets_cors_answers(tmp_path):
    origin = "http://localhost:3000"
    async with started(tmp_path, allowed_origins=[origin]) as backend:
        models = path_of(backend.base_url, "/models")
        preflight = await request(
            backend.base_url,
            "OPTIONS",
            models,
            {
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status == 204 and preflight.headers["access-control-allow-origin"] == origin
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        listed = await request(backend.base_url, "GET", models, auth(backend, Origin=origin))
        assert listed.status == 200 and listed.headers["access-control-allow-origin"] == origin
        # The origin is allowed to ask, not to skip the key.
        keyless = await request(backend.base_url, "GET", models, {"Origin": origin})
        assert keyless.status == 401
        other = await request(backend.base_url, "GET", models, auth(backend, Origin="http://localhost:4000"))
        assert other.status == 403


# -- DNS rebinding ---------------------------------------------------------------------------------


async def test_a_foreign_host_header_is_refused(backend):
    models = path_of(backend.base_url, "/models")
    port = backend.base_url.split(":")[2].split("/")[0]
    rebound = await request(backend.base_url, "GET", models, auth(backend, Host=f"evil.example:{port}"))
    assert rebound.status == 403 and rebound.error["code"] == "host_not_allowed"
    assert "evil.example" in rebound.error["message"]
    for host in (f"localhost:{port}", "localhost", f"127.0.0.1:{port}", f"[::1]:{port}", f"app.localhost:{port}"):
        answer = await request(backend.base_url, "GET", models, auth(backend, Host=host))
        assert answer.status == 200, host
    # Before the key is looked at: a rebinding page learns nothing, not even that a key is wrong.
    keyless = await request(backend.base_url, "GET", models, {"Host": "evil.example"})
    assert keyless.status == 403


async def test_allowed_hosts_are_answered(tmp_path):
    async with started(tmp_path, allowed_hosts=["tunedeck.lan"]) as backend:
        models = path_of(backend.base_url, "/models")
        assert (await request(backend.base_url, "GET", models, auth(backend, Host="tunedeck.lan:8765"))).status == 200
        assert (await request(backend.base_url, "GET", models, auth(backend, Host="evil.example"))).status == 403


def test_a_non_loopback_bind_address_is_allowed_as_host_and_announced(tmp_path):
    lan = LocalBackend(tmp_path / "lan", host="192.0.2.7")
    guard = lan._guard()
    assert guard.host_allowed("192.0.2.7:8765") and guard.host_allowed("localhost:8765")
    assert not guard.host_allowed("192.0.2.8") and not guard.host_allowed("evil.example")
    everywhere = LocalBackend(tmp_path / "all", host="0.0.0.0")._guard()
    assert everywhere.host_allowed("10.1.2.3:8765") and not everywhere.host_allowed("evil.example")
    notices = "\n".join(_access_notices(lan))
    assert "reachable from the network" in notices and str(api_key_file(tmp_path / "lan")) in notices
    assert lan.api_key not in notices
    assert "reachable" not in "\n".join(_access_notices(LocalBackend(tmp_path / "loop")))


def test_serve_says_where_the_key_is_and_never_prints_it(tmp_path):
    code = "import sys; from tunedeck.backend import serve; serve(sys.argv[1], port=0)"
    data_dir = tmp_path / "served"
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(data_dir)], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        lines = []
        while not lines or "API key" not in lines[-1]:  # the announcement's lines, up to the key's
            lines.append(process.stdout.readline())
            assert lines[-1], lines  # the process ended before saying where the key is
        assert any(str(api_key_file(data_dir)) in line for line in lines), lines
        assert not any(load_or_create_api_key(data_dir) in line for line in lines)
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=20)
        assert load_or_create_api_key(data_dir) not in out


# -- owner-only files ------------------------------------------------------------------------------


async def test_everything_the_backend_keeps_is_owner_only(tmp_path):
    previous = os.umask(0)  # the strictest test: nothing may rely on the umask to hide it
    try:
        async with started(tmp_path) as backend:
            sdk = openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=0)
            file = await sdk.files.create(file=("train.jsonl", TRAIN), purpose="fine-tune")
            upload = await sdk.uploads.create(bytes=3, filename="u.jsonl", mime_type="text/jsonl", purpose="fine-tune")
            await sdk.uploads.parts.create(upload.id, data=b"abc")
            job = await sdk.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id)
            await backend.run_until_async(job.id, "succeeded")
            await sdk.close()
            data_dir = backend.data_dir
            kept = _modes(data_dir)
    finally:
        os.umask(previous)
    names = {path.relative_to(data_dir).as_posix() for path in kept}
    for expected in ("api-key", "backend.lock", "endpoint.json", "backend.sqlite3", "backend.sqlite3-wal", "files",
                     "files/.incoming", "models", "uploads", "logs", f"files/{file.id}", f"uploads/{upload.id}/upload.json"):  # fmt: skip
        assert expected in names, expected
    assert any(name.startswith(f"models/{job.id}/step-") for name in names)  # checkpoints, written by a trainer
    loose = {path.relative_to(data_dir).as_posix(): oct(mode) for path, mode in kept.items()
             if mode != (0o700 if path.is_dir() else 0o600)}  # fmt: skip
    assert loose == {}
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def _modes(root: Path) -> dict[Path, int]:
    return {path: stat.S_IMODE(path.stat().st_mode) for path in root.rglob("*")}


async def _job(client):
    file = await client.files.create(file=("train.jsonl", TRAIN), purpose="fine-tune")
    return await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id)
