"""FastAPI dependencies: what a route may ask for, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from services.api.auth import ApiKeys
from services.api.models import SubmitForm
from services.api.pages import IndexedPages
from shared.backends import Backends
from shared.metrics import Metrics
from shared.settings import Settings

__all__ = ["Backend", "Caller", "Config", "MetricsDep", "Pages", "SubmitFields"]

# Every dependency is ``async def``: FastAPI runs a plain ``def`` one in its
# threadpool, a thread hop per dependency per request (bench.queue_overhead measured
# five per submit); these do no I/O, so they can run on the loop.


async def _backends(request: Request) -> Backends:
    return request.app.state.backends  # type: ignore[no-any-return]


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


async def _pages(request: Request) -> IndexedPages:
    return request.app.state.pages  # type: ignore[no-any-return]


async def _submit_form(request: Request) -> type[SubmitForm]:
    return request.app.state.submit_form  # type: ignore[no-any-return]


async def _caller(
    request: Request, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> str:
    keys: ApiKeys = request.app.state.api_keys
    return keys.client_for(authorization)


Backend = Annotated[Backends, Depends(_backends)]
Config = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
#: Results pages read through the documents' indexes.
Pages = Annotated[IndexedPages, Depends(_pages)]
#: The submit form with this deployment's pipelines and limits.
SubmitFields = Annotated[type[SubmitForm], Depends(_submit_form)]
#: The authenticated client (401 without a valid key).
Caller = Annotated[str, Depends(_caller)]
