"""Long-term memory over the API: review, search, add, edit and forget the caller's tenant's memories.

Every route acts in the caller's tenant only: namespaces must start with it, and a record of another
tenant answers 404 like one that does not exist. Same operations as ``stepwise memory …``; see
docs/memory.md.

No ``from __future__ import annotations``: Powertools reads the route signatures at runtime.
"""

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated, TypeVar

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter as Router
from pydantic import BaseModel, ConfigDict, Field

from stepwise.api.auth import tenant_of
from stepwise.api.errors import ApiError, documented
from stepwise.api.facade import StepwiseApi
from stepwise.memory.records import MemoryError_, MemoryHit, MemoryQuery, MemoryRecord, Strategy

if TYPE_CHECKING:  # numpy comes with the memory extra; serve must answer without it
    from stepwise.memory.ltm import LongTermStore

T = TypeVar("T")


class NewMemory(BaseModel):
    """A memory to store in the caller's tenant."""

    model_config = ConfigDict(extra="forbid", strict=True)  # as every request body (api.models._Body)
    namespace: str = Field(description="tenant/agent/user/...: must start with your tenant")
    text: str = Field(min_length=1, max_length=32_000)
    strategy: Strategy = "semantic"
    key: str | None = Field(default=None, description="topic key: a new memory with the same key supersedes the current one")
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)
    importance: float = Field(default=0.5, ge=0, le=1)
    ttl_seconds: float | None = Field(default=None, gt=0)


class MemoryEdit(BaseModel):
    """A correction of a memory: its new text (a new version supersedes the old)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # as every request body (api.models._Body)
    text: str = Field(min_length=1, max_length=32_000)
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)


class MemorySearch(BaseModel):
    """A search of the caller's memories by meaning, optionally as of a past time."""

    model_config = ConfigDict(extra="forbid", strict=True)  # as every request body (api.models._Body)
    text: str
    namespaces: list[str] | None = Field(default=None, description="namespace prefixes (default: your whole tenant)")
    strategies: list[Strategy] | None = None
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)
    top_k: int = Field(default=5, ge=1, le=100)
    as_of: float | None = Field(default=None, description="epoch seconds: what was true then")


class MemoryList(BaseModel):
    """Memories of one tenant."""

    tenant: str
    memories: list[MemoryRecord]


class MemoryHits(BaseModel):
    """Search results of one tenant, most relevant first."""

    tenant: str
    hits: list[MemoryHit]


class Forgotten(BaseModel):
    """How many versions a forget removed."""

    forgotten: int


def router(api: StepwiseApi) -> Router:
    """The caller's tenant's long-term memories, through the engine client's memory (``Stepwise.memory``)."""
    router = Router()
    tenant = partial(tenant_of, router)

    def ltm() -> "LongTermStore":
        return api.client.memory().ltm

    def guarded(call: Callable[[], T]) -> T:
        try:
            return call()
        except MemoryError_ as exc:
            text = str(exc)
            if text.startswith("no memory"):
                raise ApiError(404, "not_found", text) from None
            raise ApiError(422, "validation_error", text) from None

    @router.get("/memories", summary="List your memories", tags=["memory"], responses=documented())
    def list_memories(
        namespace: Annotated[str | None, Query()] = None,
        strategy: Annotated[Strategy | None, Query()] = None,
        history: Annotated[bool, Query(description="include superseded versions")] = False,
        as_of: Annotated[float | None, Query(description="epoch seconds")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> MemoryList:
        found = guarded(
            lambda: ltm().list(
                tenant(), namespace, strategies=[strategy] if strategy else None, include_history=history, as_of=as_of, limit=limit
            )
        )
        return MemoryList(tenant=tenant(), memories=found)

    @router.post("/memories", status_code=201, summary="Store a memory", tags=["memory"], responses=documented(ok=201, body=True))
    def add_memory(body: Annotated[NewMemory, Body()]) -> MemoryRecord:
        return guarded(
            lambda: ltm().remember(
                tenant(), body.namespace, body.text, strategy=body.strategy, key=body.key, metadata=body.metadata,
                importance=body.importance, ttl_seconds=body.ttl_seconds,
            )
        )  # fmt: skip

    @router.post("/memories/search", summary="Search your memories by meaning", tags=["memory"], responses=documented(body=True))
    def search_memories(body: Annotated[MemorySearch, Body()]) -> MemoryHits:
        query = guarded(
            lambda: MemoryQuery(
                text=body.text, namespaces=body.namespaces or [tenant()], strategies=body.strategies, metadata=body.metadata,
                top_k=body.top_k, as_of=body.as_of,
            )
        )  # fmt: skip
        return MemoryHits(tenant=tenant(), hits=guarded(lambda: ltm().search(tenant(), query)))

    @router.get("/memories/<memory_id>", summary="One memory", tags=["memory"], responses=documented())
    def get_memory(memory_id: str) -> MemoryRecord:
        return guarded(lambda: ltm().get(tenant(), memory_id))

    @router.get(
        "/memories/<memory_id>/history",
        summary="Every version of a memory, oldest first",
        tags=["memory"],
        responses=documented(),
    )
    def memory_history(memory_id: str) -> MemoryList:
        return MemoryList(tenant=tenant(), memories=guarded(lambda: ltm().history(tenant(), memory_id)))

    @router.patch(
        "/memories/<memory_id>",
        summary="Correct a memory (a new version supersedes it)",
        tags=["memory"],
        responses=documented(body=True),
    )
    def edit_memory(memory_id: str, body: Annotated[MemoryEdit, Body()]) -> MemoryRecord:
        return guarded(lambda: ltm().edit(tenant(), memory_id, body.text, metadata=body.metadata))

    @router.delete("/memories/<memory_id>", summary="Forget a memory and all its versions", tags=["memory"], responses=documented())
    def forget_memory(memory_id: str) -> Forgotten:
        return Forgotten(forgotten=guarded(lambda: ltm().forget(tenant(), memory_id)))

    return router
