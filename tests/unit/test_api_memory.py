"""Memory routes of the HTTPS API: tenant-scoped review, search, edit, history and forget."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_api_routes import error_code, make

from stepwise.client import Stepwise


def test_memory_routes_round_trip_and_tenant_isolation(tmp_path: Path) -> None:
    h = make(client=Stepwise.embedded(tmp_path))
    first = h(
        "POST", "/memories", {"namespace": "acme/a/dana", "text": "The user prefers window seats.", "strategy": "preference", "key": "seat"}
    )
    assert first.status == 201, first.body
    second = h(
        "POST", "/memories", {"namespace": "acme/a/dana", "text": "The user prefers aisle seats.", "strategy": "preference", "key": "seat"}
    )
    found = h("POST", "/memories/search", {"text": "which seat does dana like"})
    assert found.status == 200 and found.body["hits"][0]["record"]["text"] == "The user prefers aisle seats."
    then = h("POST", "/memories/search", {"text": "seat", "as_of": first.body["valid_from"] + 1e-4})
    assert [x["record"]["text"] for x in then.body["hits"]] == ["The user prefers window seats."]
    history = h("GET", f"/memories/{second.body['id']}/history")
    assert [r["text"] for r in history.body["memories"]] == ["The user prefers window seats.", "The user prefers aisle seats."]
    edited = h("PATCH", f"/memories/{second.body['id']}", {"text": "The user prefers aisle seats near the front."})
    assert edited.status == 200 and edited.body["text"].endswith("front.")
    listed = h("GET", "/memories", query={"history": "true"})
    assert len(listed.body["memories"]) == 3
    # globex sees nothing of acme's, cannot write into acme's namespaces, and acme's ids answer 404
    assert h("GET", "/memories", tenant="globex").body["memories"] == []
    assert h("POST", "/memories/search", {"text": "seat"}, tenant="globex").body["hits"] == []
    sneaky = h("POST", "/memories", {"namespace": "acme/a/dana", "text": "x"}, tenant="globex")
    assert sneaky.status == 422 and "not in tenant" in sneaky.body["error"]["message"]
    assert error_code(h("GET", f"/memories/{edited.body['id']}", tenant="globex")) == "not_found"
    assert h("DELETE", f"/memories/{edited.body['id']}", tenant="globex").status == 404
    assert h("DELETE", f"/memories/{edited.body['id']}").body == {"forgotten": 3}
    assert h("GET", "/memories", query={"history": "true"}).body["memories"] == []
    assert h("POST", "/memories", {"namespace": "acme/a", "text": "x", "bogus": 1}).status == 422
