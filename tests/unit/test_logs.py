import json
import logging
from datetime import datetime

import pytest

from shared.logs import REDACTED, configure_logging, redact, redact_text
from shared.settings import Settings

pytestmark = pytest.mark.unit

SECRET = "pa55-w0rd"


@pytest.fixture
def root_logging():
    """Give the test the root logger and put it back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("amqp://videoq:pa55@rabbit:5672/vh", "amqp://videoq:***@rabbit:5672/vh"),
        ("postgresql://u:p%40ss@db/videoq", "postgresql://u:***@db/videoq"),
        ("amqps://:onlypass@h/", "amqps://:***@h/"),
        ("connect to amqp://a:b@h/ failed; retry amqp://c:d@i/", None),
        ("postgresql://db/videoq?user=u&password=sec&sslmode=require", None),
        ("host=db user=u password=sec dbname=videoq", "host=db user=u password=*** dbname=videoq"),
        ("http://127.0.0.1:8000/video/status/1", "http://127.0.0.1:8000/video/status/1"),
        (
            "postgresql://postgres@127.0.0.1:5432/videoq",
            "postgresql://postgres@127.0.0.1:5432/videoq",
        ),
        ("ratio 1:2 at 10:30", "ratio 1:2 at 10:30"),
    ],
)
def test_redact_text_hides_url_passwords_and_password_parameters(text, expected):
    out = redact_text(text)
    if expected is not None:
        assert out == expected
    for secret in ("pa55", "p%40ss", "onlypass", ":b@", ":d@", "sec&", "=sec "):
        assert secret not in out
    assert redact_text(out) == out  # idempotent


def test_redact_hides_values_of_secret_named_fields_at_any_depth_and_keeps_the_rest():
    value = {
        "job_id": "j1",
        "token_count": 3,
        "settings": {
            "amqp_url": f"amqp://u:{SECRET}@h/",
            "api_keys": ["k1", "k2"],
            "aws_secret_access_key": SECRET,
            "nested": [{"password": SECRET, "passed": True}],
            "Authorization": f"Bearer {SECRET}",
            "access_token": SECRET,
            "db_password": None,
        },
    }
    out = redact(value)
    assert SECRET not in json.dumps(out)
    assert out["job_id"] == "j1" and out["token_count"] == 3
    s = out["settings"]
    assert s["amqp_url"] == "amqp://u:***@h/"
    assert s["api_keys"] == s["aws_secret_access_key"] == s["Authorization"] == REDACTED
    assert s["nested"] == [{"password": REDACTED, "passed": True}]
    assert s["db_password"] is None  # nothing to hide, and the absence is useful
    assert value["settings"]["access_token"] == SECRET  # the input is left alone


def test_a_json_line_has_the_standard_fields_and_the_extras(root_logging, capsys):
    configure_logging(service="worker", fmt="json", level="INFO")
    logging.getLogger("videoq.worker").info("job.claimed", extra={"job_id": "abc", "attempt": 2})
    logging.getLogger("videoq.worker").debug("job.noise")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert {k: line[k] for k in ("level", "service", "logger", "event", "job_id", "attempt")} == {
        "level": "info",
        "service": "worker",
        "logger": "videoq.worker",
        "event": "job.claimed",
        "job_id": "abc",
        "attempt": 2,
    }
    assert datetime.fromisoformat(line["ts"]).tzinfo is not None


def test_no_secret_reaches_a_json_line_from_extras_messages_or_exceptions(root_logging, capsys):
    configure_logging(service="api", fmt="json")
    log = logging.getLogger("videoq.test")
    settings = Settings(
        amqp_url=f"amqp://videoq:{SECRET}@rabbit:5672/videoq",
        database_url=f"postgresql://videoq:{SECRET}@db:5432/videoq",
    )
    log.info("api.starting", extra={"settings": settings.redacted()})
    log.warning("startup.waiting", extra={"error": f"cannot connect to amqp://videoq:{SECRET}@x/"})
    log.info("raw %s", f"postgresql://u:{SECRET}@db/x", extra={"api_key": SECRET})
    try:
        raise ConnectionError(f"amqp://videoq:{SECRET}@rabbit/ refused")
    except ConnectionError:
        log.exception("broker.failed")
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert len(lines) == 4
    assert SECRET not in err
    assert lines[0]["settings"]["amqp_url"] == "amqp://videoq:***@rabbit:5672/videoq"
    assert lines[2]["event"] == "raw postgresql://u:***@db/x"
    assert lines[2]["api_key"] == REDACTED
    assert "amqp://videoq:***@rabbit/ refused" in lines[3]["exception"]


def test_the_text_format_is_one_readable_line_without_secrets(root_logging, capsys):
    configure_logging(service="dev", fmt="text")
    logging.getLogger("videoq.dev").info(
        "dev.started", extra={"url": f"postgresql://u:{SECRET}@h/db", "job_id": "j1"}
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "INFO" in err and "dev.started" in err and "job_id=j1" in err
    assert SECRET not in err and "postgresql://u:***@h/db" in err
