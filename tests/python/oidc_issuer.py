"""A local OpenID Connect issuer for vigil's `oidc` tests: it serves a discovery document and a real
JWKS, and signs real JWTs with PyJWT and cryptography. It stands in for an identity provider, which
cannot run here; it speaks the protocol's parts that a relying party uses.

Keys: `rsa-1` (RS256) and `ec-1` (ES256) are published from the start; `rsa-2` (RS256) only after
GET /rotate, to test that an unknown `kid` makes the relying party fetch the key set again.

Endpoints:
  /.well-known/openid-configuration   discovery (issuer, jwks_uri)
  /jwks                               the published keys
  /mint?kid=..&sub=..&aud=..&groups=a,b&exp=<seconds from now, may be negative>&iss=..
                                      a signed ID token (text)
  /rotate                             publishes rsa-2
  /stats                              {"jwks_fetches": n}

Prints {"port": N} on its first stdout line once it listens on 127.0.0.1:N (N from --port, or
chosen by the OS)."""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

KEYS = {
    "rsa-1": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "ec-1": ("ES256", ec.generate_private_key(ec.SECP256R1())),
    "rsa-2": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
}
STATE = {"published": {"rsa-1", "ec-1"}, "jwks_fetches": 0}
LOCK = threading.Lock()


def jwk(kid):
    alg, key = KEYS[kid]
    algo = RSAAlgorithm if alg.startswith("RS") else ECAlgorithm
    d = json.loads(algo.to_jwk(key.public_key()))
    d.update({"kid": kid, "alg": alg, "use": "sig"})
    return d


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, code, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        issuer = self.server.issuer
        if url.path == "/.well-known/openid-configuration":
            self.send(200, json.dumps({"issuer": issuer, "jwks_uri": issuer + "/jwks"}))
        elif url.path == "/jwks":
            with LOCK:
                STATE["jwks_fetches"] += 1
                keys = [jwk(k) for k in sorted(STATE["published"])]
            self.send(200, json.dumps({"keys": keys}))
        elif url.path == "/rotate":
            with LOCK:
                STATE["published"].add("rsa-2")
            self.send(200, "{}")
        elif url.path == "/stats":
            with LOCK:
                self.send(200, json.dumps({"jwks_fetches": STATE["jwks_fetches"]}))
        elif url.path == "/mint":
            kid = q.get("kid", "rsa-1")
            alg, key = KEYS[kid]
            now = int(time.time())
            claims = {
                "iss": q.get("iss", issuer),
                "sub": q.get("sub", "alice"),
                "aud": q.get("aud", "vigil"),
                "iat": now,
                "exp": now + int(q.get("exp", "600")),
            }
            if q.get("groups"):
                claims["groups"] = q["groups"].split(",")
            token = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
            self.send(200, token, "text/plain")
        else:
            self.send(404, "{}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
