"""A stand-in for Neutron that has no networks, so that upstream nova boots servers without one.

Nova has no network back end but Neutron's API: a boot at microversion 2.1 that names no network
(what `bench run` sends) makes nova-api list the project's and the shared networks and read the
port quota, and nova-compute list the networks again, then the instance's ports on delete. Real
Neutron answering "there are none" would let the boot go on with no NIC, which is what this
does, with no database and no agents: every collection is empty, every quota unlimited, every
single resource 404, every write 404 (nova makes none when there is no network). Nothing checks
the caller's token. It is not in the catalog (nova reaches it through `[neutron]
endpoint_override`), so `bench run` sees a cloud without a network service.

Run in the upstream venv, or any Python 3.11: `python neutron_stub.py --port 39696`.
"""

import argparse
import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_ITEM = re.compile(r"^/v2\.0/(?P<collection>[a-z_-]+)/(?P<id>[^/]+?)(\.json)?$")
_COLLECTION = re.compile(r"^/v2\.0/(?P<collection>[a-z_-]+?)(\.json)?$")
UNLIMITED = {
    k: -1
    for k in ("network", "subnet", "port", "router", "floatingip", "security_group", "security_group_rule")
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as keystoneauth's sessions expect
    server_version = "neutron-stub"

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self) -> None:
        message = f"{self.command} {self.path}: this stand-in has no networks"
        self._reply(404, {"NeutronError": {"type": "NotFound", "message": message, "detail": ""}})

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if path in ("", "/v2.0"):
            self._reply(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": []}]})
            return
        item = _ITEM.match(path)
        if item and item["collection"] == "quotas":
            self._reply(200, {"quota": UNLIMITED})
            return
        collection = _COLLECTION.match(path)
        if collection:
            self._reply(200, {collection["collection"].replace("-", "_"): []})
            return
        self._not_found()

    def _write(self) -> None:
        self._drain()
        self._not_found()

    do_POST = do_PUT = do_DELETE = _write

    def log_message(self, format: str, *args: object) -> None:  # one line per request is noise
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=39696)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"neutron stand-in on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
