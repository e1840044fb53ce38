"""JWT bearer auth against a JWKS served over real HTTP on 127.0.0.1: claims → tenant/roles, key
rotation, and the attack suite (every forged, stale or malformed token is a 401, never a 5xx)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from stepwise.api.app import create_app
from stepwise.api.keys import create_key
from stepwise.api.oidc import JwksCache, JwtAuthenticator, JwtSettings
from stepwise.api.settings import ApiSettings
from stepwise.client import Stepwise
from stepwise.store.memory import MemoryApiStore

ISSUER = "https://issuer.example/pool"
AUDIENCE = "stepwise-app"


class Jwks:
    """A JWKS endpoint on a loopback port whose key set the test can rotate."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, *keys: tuple[str, Any]) -> None:
        entries = []
        for kid, private in keys:
            jwk = json.loads(
                jwt.algorithms.get_default_algorithms()["RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"].to_jwk(
                    private.public_key()
                )
            )
            entries.append({**jwk, "kid": kid, "use": "sig"})
        self.document = {"keys": entries}


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    server = Jwks()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "tenant": "acme", "roles": ["admin"], "iat": now, "exp": now + 600}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = RSA, kid: str = "k1", alg: str = "RS256") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_hs256_with_public_key(payload: dict[str, Any]) -> str:
    """The classic confusion: HMAC-sign with the issuer's *public* key as the secret (PyJWT refuses to make this)."""
    public_pem = RSA.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(json.dumps(payload).encode())
    sig = b64(hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def unsigned(payload: dict[str, Any]) -> str:
    head = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode())
    return f"{head}.{b64(json.dumps(payload).encode())}."


def tampered(payload: dict[str, Any]) -> str:
    head, _, sig = sign(payload).split(".")
    return f"{head}.{b64(json.dumps({**payload, 'tenant': 'globex'}).encode())}.{sig}"


def make_api(jwks: Jwks) -> Any:
    settings = ApiSettings(backend="memory", jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_jwks_url=jwks.url)
    store = MemoryApiStore()
    return create_app(lambda: Stepwise.in_memory(), store=store, settings=settings), store


def request(
    api: Any, path: str, token: str | None = None, method: str = "GET", body: Any = None, key: str | None = None
) -> tuple[int, Any]:
    hdrs = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token is not None else {})}
    if key:
        hdrs["x-api-key"] = key
    out = api(
        {
            "path": path,
            "httpMethod": method,
            "headers": hdrs,
            "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
            "requestContext": {"requestId": "r"},
            "body": json.dumps(body) if body is not None else None,
            "isBase64Encoded": False,
        }
    )
    return int(out["statusCode"]), json.loads(out["body"]) if out.get("body") else None


def test_a_valid_token_maps_its_claim_to_the_tenant_and_api_keys_still_work(jwks: Jwks) -> None:
    jwks.publish(("k1", RSA), ("e1", EC))
    api, store = make_api(jwks)
    graph = {"name": "tiny", "graph": {"nodes": {"a": {"fn": "statemachines.examples.nodes:fetch"}}, "entry": "a"}}
    assert request(api, "/agents", sign(claims()), "POST", {"graph": graph})[0] == 201
    assert request(api, "/agents", sign(claims(), EC, "e1", "ES256")) == (200, request(api, "/agents", sign(claims()))[1])
    _, acme_key = create_key(store, "acme")
    _, globex_key = create_key(store, "globex")
    assert [a["id"] for a in request(api, "/agents", key=acme_key)[1]["agents"]] == ["tiny"]  # same tenant
    assert request(api, "/agents", key=globex_key)[1]["agents"] == []
    assert request(api, "/agents", sign(claims(tenant="globex")))[1]["agents"] == []
    principal = api.authenticate({"authorization": f"Bearer {sign(claims(roles=['ops', 'admin']))}"}, {})
    assert (principal.tenant, principal.subject, principal.method, principal.roles) == ("acme", "jwt:user-1", "jwt", ("ops", "admin"))


def test_attack_suite_every_bad_token_is_a_401_never_a_5xx(jwks: Jwks) -> None:
    jwks.publish(("k1", RSA))
    api, _ = make_api(jwks)
    now = int(time.time())
    attacks = {
        "alg none": unsigned(claims()),
        "alg none, no kid": unsigned(claims()).replace(b64(b'{"alg": "none", "typ": "JWT", "kid": "k1"}'), b64(b'{"alg":"none"}')),
        "HS256 signed with the public key": forged_hs256_with_public_key(claims()),
        "HS256 with a guessed secret": jwt.encode(
            claims(), "a-guessed-secret-of-thirty-two-bytes", algorithm="HS256", headers={"kid": "k1"}
        ),
        "expired": sign(claims(exp=now - 3600, iat=now - 7200)),
        "not yet valid (nbf)": sign(claims(nbf=now + 3600)),
        "wrong audience": sign(claims(aud="someone-else")),
        "wrong issuer": sign(claims(iss="https://evil.example")),
        "unknown kid": sign(claims(), kid="k-unknown"),
        "right kid, another key": sign(claims(), RSA2),
        "tampered payload": tampered(claims()),
        "oversized": sign(claims(padding="x" * 20_000)),
        "no exp": sign(claims(exp=None)),
        "no sub": sign(claims(sub=None)),
        "no tenant claim": sign(claims(tenant=None)),
        "tenant not a tenant id": sign(claims(tenant="../../etc")),
        "garbage with two dots": "a.b.c",
        "bad base64 header": "!!!.e30.sig",
        "kid not a string": b64(b'{"alg":"RS256","kid":7}') + "." + sign(claims()).split(".", 1)[1],
        "empty signature": sign(claims()).rsplit(".", 1)[0] + ".",
    }
    results = {name: request(api, "/agents", token) for name, token in attacks.items()}
    counts: dict[int, int] = {}
    for status, _ in results.values():
        counts[status] = counts.get(status, 0) + 1
    print(f"JWT attack suite: {len(attacks)} tokens -> {counts}")
    assert {name: status for name, (status, _) in results.items() if status != 401} == {}
    assert all(body["error"]["code"] == "unauthorized" for _, body in results.values())
    assert jwks.hits <= 2  # a flood of made-up kids does not become a flood of JWKS fetches


def test_keys_rotate_an_unknown_kid_refetches_the_set_at_most_once_per_interval(jwks: Jwks) -> None:
    jwks.publish(("k1", RSA))
    now = [0.0]
    settings = JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks.url, refetch_seconds=30, cache_seconds=300)
    auth = JwtAuthenticator(settings, JwksCache(settings, clock=lambda: now[0]))
    assert auth.authenticate({"authorization": f"Bearer {sign(claims())}"}, {}).tenant == "acme"  # type: ignore[union-attr]
    jwks.publish(("k2", RSA2))  # the issuer rotates
    now[0] = 5.0
    with pytest.raises(Exception, match="unknown key"):  # within the refetch interval: no refetch yet
        auth.authenticate({"authorization": f"Bearer {sign(claims(), RSA2, 'k2')}"}, {})
    now[0] = 40.0
    assert auth.authenticate({"authorization": f"Bearer {sign(claims(), RSA2, 'k2')}"}, {}).tenant == "acme"  # type: ignore[union-attr]
    assert auth.keys.fetches == 2
    with pytest.raises(Exception, match="unknown key"):  # the retired key is gone
        auth.authenticate({"authorization": f"Bearer {sign(claims())}"}, {})


def test_symmetric_algorithms_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        JwtSettings(issuer=ISSUER, audience=AUDIENCE, algorithms=("HS256",))


def test_an_unreachable_issuer_is_a_401(jwks: Jwks) -> None:
    settings = ApiSettings(backend="memory", jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_jwks_url="http://127.0.0.1:9/nothing")
    api = create_app(lambda: Stepwise.in_memory(), store=MemoryApiStore(), settings=settings)
    status, body = request(api, "/agents", sign(claims()))
    assert status == 401 and "cannot fetch" in body["error"]["message"]
