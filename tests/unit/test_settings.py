import pytest
from pydantic import ValidationError

from shared.settings import Settings, redact_url

pytestmark = pytest.mark.unit


def test_settings_come_from_videoq_variables(monkeypatch):
    monkeypatch.setenv("VIDEOQ_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("VIDEOQ_RETRY_DELAYS", "5,30,300")
    monkeypatch.setenv("VIDEOQ_STORAGE_URL", "file:///tmp/videoq")
    settings = Settings()
    assert settings.max_attempts == 7
    assert settings.retry_delays == (5.0, 30.0, 300.0)
    assert settings.storage_url == "file:///tmp/videoq"


@pytest.mark.parametrize(
    "field,value",
    [
        ("retry_delays", "60,10"),
        ("retry_delays", ""),
        ("max_attempts", "0"),
        ("storage_url", "ftp://x"),
        ("log_format", "xml"),
    ],
)
def test_bad_values_are_refused_at_start_up(monkeypatch, field, value):
    monkeypatch.setenv(f"VIDEOQ_{field.upper()}", value)
    with pytest.raises(ValidationError):
        Settings()


def test_redacted_settings_hold_no_password():
    settings = Settings(
        amqp_url="amqp://videoq:s3cret-amqp@rabbit:5672/",
        database_url="postgresql://videoq:s3cret-db@pg/videoq",
    )
    text = repr(settings) + str(settings.redacted())
    assert "s3cret" not in text
    assert settings.redacted()["amqp_url"] == "amqp://videoq:***@rabbit:5672/"


def test_urls_without_a_password_are_left_alone():
    assert (
        redact_url("postgresql://postgres@127.0.0.1/videoq")
        == "postgresql://postgres@127.0.0.1/videoq"
    )
