"""API keys and per-client isolation, on the real backends."""

import uuid

import httpx
import pytest
from pydantic import SecretStr

from services.api.app import create_app
from services.api.auth import hash_key
from shared.backends import open_backends

pytestmark = pytest.mark.integration

KEYS = {"alice": "alice-key-0123456789", "bob": "bob-key-9876543210"}


@pytest.fixture
async def app(settings):
    secured = settings.model_copy(
        update={
            "auth_disabled": False,
            "api_keys": SecretStr(",".join(f"{c}:{hash_key(k)}" for c, k in KEYS.items())),
        }
    )
    application = create_app(secured)
    application.state.backends = await open_backends(secured, app_id="videoq-api")
    yield application
    await application.state.backends.close()


def client_of(app, key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://videoq", headers=headers
    )


async def submit(client, sample_mp4) -> str:
    response = await client.post(
        "/video/submit", files={"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")}
    )
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


@pytest.mark.parametrize("key", [None, "wrong-key", ""])
async def test_without_a_valid_key_every_video_route_is_401(app, key, sample_mp4):
    async with client_of(app, key) as client:
        for method, path in [
            ("GET", f"/video/status/{uuid.uuid4()}"),
            ("GET", f"/video/results/{uuid.uuid4()}"),
            ("GET", "/video/jobs"),
            ("DELETE", f"/video/jobs/{uuid.uuid4()}"),
        ]:
            response = await client.request(method, path)
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json() == {"detail": "Missing or invalid API key"}
        response = await client.post(
            "/video/submit", files={"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")}
        )
        assert response.status_code == 401


async def test_another_clients_job_is_404_everywhere_and_indistinguishable_from_none(
    app, sample_mp4
):
    async with client_of(app, KEYS["alice"]) as alice, client_of(app, KEYS["bob"]) as bob:
        job_id = await submit(alice, sample_mp4)
        assert (await alice.get(f"/video/status/{job_id}")).status_code == 200
        missing = uuid.uuid4()
        for path in ("/video/status/{}", "/video/results/{}"):
            theirs = await bob.get(path.format(job_id))
            nobodys = await bob.get(path.format(missing))
            assert theirs.status_code == nobodys.status_code == 404
            assert theirs.json() == nobodys.json() == {"detail": "Job not found"}
        assert (await bob.delete(f"/video/jobs/{job_id}")).json() == {"detail": "Job not found"}
        assert (await bob.get("/video/jobs")).json() == {"jobs": [], "next_cursor": None}
        assert [j["job_id"] for j in (await alice.get("/video/jobs")).json()["jobs"]] == [job_id]


async def test_health_and_metrics_need_no_key(app):
    async with client_of(app, None) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200


def test_the_api_refuses_to_start_without_keys_unless_told_to(settings):
    with pytest.raises(ValueError, match="VIDEOQ_API_KEYS"):
        create_app(settings.model_copy(update={"auth_disabled": False, "api_keys": None}))


def test_a_malformed_key_entry_is_refused_without_echoing_it(settings):
    with pytest.raises(ValueError) as error:
        create_app(
            settings.model_copy(
                update={"auth_disabled": False, "api_keys": SecretStr("alice:plain-secret-key")}
            )
        )
    assert "plain-secret-key" not in str(error.value)


async def test_a_client_at_its_in_flight_limit_gets_429_and_others_do_not(settings, sample_mp4):
    limited = settings.model_copy(
        update={
            "auth_disabled": False,
            "api_keys": SecretStr(",".join(f"{c}:{hash_key(k)}" for c, k in KEYS.items())),
            "max_jobs_in_flight": 2,
        }
    )
    application = create_app(limited)
    application.state.backends = await open_backends(limited, app_id="videoq-api")
    body = {"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")}
    try:
        async with client_of(application, KEYS["alice"]) as alice:
            first = (
                await alice.post("/video/submit", files=body, headers={"Idempotency-Key": "k1"})
            ).json()["job_id"]
            await submit(alice, sample_mp4)
            refused = await alice.post("/video/submit", files=body)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "5"
            assert "at most 2 pending or running" in refused.json()["detail"]
            # A retry of an earlier submit still gets its job back.
            again = await alice.post("/video/submit", files=body, headers={"Idempotency-Key": "k1"})
            assert (again.status_code, again.json()["job_id"]) == (200, first)
            async with client_of(application, KEYS["bob"]) as bob:
                await submit(bob, sample_mp4)  # another client's jobs do not count
            # Once one of alice's jobs has ended, she may submit again.
            assert (await alice.delete(f"/video/jobs/{first}")).status_code == 202
            assert (await alice.get(f"/video/status/{first}")).json()["status"] == "failed"
            await submit(alice, sample_mp4)
    finally:
        await application.state.backends.close()
