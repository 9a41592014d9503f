import pytest

from services.cli.client import Client
from tests.support.stack import Stack


@pytest.fixture
def stack(settings, tmp_path, request):
    s = Stack(settings, tmp_path / "logs")
    yield s
    s.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        for name in s.procs:
            print(f"--- {name} log ---\n{s.log(name)[-4000:]}")


@pytest.fixture
def client(stack):
    url = stack.start_all()
    with Client(url) as c:
        yield c


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
