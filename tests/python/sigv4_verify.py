"""A local stand-in for AWS behind vigil's sigv4auth: it checks every signed request's SigV4
signature by computing it again with botocore's SigV4Auth (the AWS SDK for Python's signer) from
the request it received, and plays STS for the role exchanges.

- POST /sts/: STS's query protocol. AssumeRole must be signed (service sts) with the base keys;
  AssumeRoleWithWebIdentity must carry the expected token. Both answer STS's XML with temporary
  keys of their own.
- any other POST: must be signed with keys this server knows (base, or a role's with its session
  token) for the region and service the test expects. 204 when the signature is botocore's, 403
  otherwise.
- GET /results: what was checked, as JSON.

Prints {"port": N} once listening. Arguments: the expected web identity token.
"""

import datetime
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

WEB_TOKEN = sys.argv[1]
BASE = ("AKIDBASE", "base/secret+key", None)
ROLE = ("AKIDROLE", "role/secret+key", "ROLETOKEN/abc=")
WEB = ("AKIDWEB", "web/secret+key", "WEBTOKEN&xyz")
KEYS = {k[0]: k for k in (BASE, ROLE, WEB)}

results = []
lock = threading.Lock()


def verify(method, path, headers, body):
    """(ok, reason, access key id, scope, signed headers) of a request's signature."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return False, "no SigV4 authorization header", "", "", ""
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    akid, date, region, service, _ = parts["Credential"].split("/")
    signed = parts["SignedHeaders"].split(";")
    if akid not in KEYS:
        return False, "unknown access key " + akid, akid, "", parts["SignedHeaders"]
    key, secret, token = KEYS[akid]
    if token is not None and headers.get("x-amz-security-token") != token:
        return False, "wrong or missing session token", akid, "", parts["SignedHeaders"]
    # botocore signs every header of the request plus host, and sets x-amz-date and the token
    # itself: give it the signed headers as received, and the time the request was signed at.
    given = {
        h: headers[h]
        for h in signed
        if h not in ("host", "x-amz-date", "x-amz-security-token") and h in headers
    }
    url = "http://" + headers.get("host", "") + path
    req = AWSRequest(method=method, url=url, data=body, headers=given)
    at = datetime.datetime.strptime(headers.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ")
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
        SigV4Auth(Credentials(key, secret, token), service, region).add_auth(req)
    ok = req.headers["Authorization"] == auth
    reason = "" if ok else "botocore computes " + req.headers["Authorization"]
    return ok, reason, akid, region + "/" + service, parts["SignedHeaders"]


def sts_answer(action, creds):
    expires = (datetime.datetime.utcnow() + datetime.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    key, secret, token = creds
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;")
    return (
        f'<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<{action}Result><Credentials><AccessKeyId>{key}</AccessKeyId>"
        f"<SecretAccessKey>{esc(secret)}</SecretAccessKey>"
        f"<SessionToken>{esc(token)}</SessionToken><Expiration>{expires}</Expiration>"
        f"</Credentials></{action}Result></{action}Response>"
    )


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", ctype="text/plain"):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            self.answer(200, json.dumps(results).encode(), "application/json")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path.startswith("/sts"):
            form = dict(urllib.parse.parse_qsl(body.decode()))
            action = form.get("Action", "")
            if action == "AssumeRole":
                ok, reason, akid, scope, signed = verify("POST", self.path, headers, body)
                ok = ok and akid == BASE[0] and scope.endswith("/sts")
                creds = ROLE
            elif action == "AssumeRoleWithWebIdentity":
                ok = form.get("WebIdentityToken") == WEB_TOKEN
                reason, akid, scope, signed = "" if ok else "wrong token", "", "", ""
                creds = WEB
            else:
                ok, reason, akid, scope, signed, creds = False, "unknown action", "", "", "", None
            with lock:
                results.append(
                    {"path": "sts", "action": action, "ok": ok, "reason": reason, "akid": akid,
                     "scope": scope, "role": form.get("RoleArn", ""),
                     "session": form.get("RoleSessionName", "")}
                )
            if not ok:
                return self.answer(403, reason.encode())
            return self.answer(200, sts_answer(action, creds).encode(), "text/xml")
        ok, reason, akid, scope, signed = verify("POST", self.path, headers, body)
        with lock:
            results.append(
                {"path": self.path, "ok": ok, "reason": reason, "akid": akid, "scope": scope,
                 "signed": signed, "bytes": len(body)}
            )
        self.answer(204 if ok else 403, b"" if ok else reason.encode())


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
