#!/usr/bin/env python3
"""A stand-in for api.github.com on a test address (this machine has no internet).

Usage: fake_github.py ADDR CERT KEY READY_FILE

Serves HTTPS on ADDR:443 with CERT/KEY (issued for api.github.com by a throwaway CA). It answers
GET /search/repositories with one repository, and records the Authorization header it saw, so the
test can check that the token arrived by name. Writes READY_FILE once listening.
"""
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

addr, cert, key, ready = sys.argv[1:5]
seen = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        seen.append(self.headers.get("Authorization", ""))
        if self.path.startswith("/search/repositories"):
            body = {
                "total_count": 1,
                "incomplete_results": False,
                "items": [{
                    "id": 1, "node_id": "R_1", "name": "warden-test", "full_name": "octo/warden-test",
                    "owner": {"login": "octo", "id": 2, "node_id": "U_2", "avatar_url": "", "url": "", "html_url": "", "type": "User"},
                    "private": False, "html_url": "https://github.com/octo/warden-test",
                    "description": "auth=" + seen[-1], "fork": False, "url": "", "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z", "pushed_at": "2026-01-01T00:00:00Z", "git_url": "",
                    "ssh_url": "", "clone_url": "", "default_branch": "main",
                }],
            }
            data = json.dumps(body).encode()
            self.send_response(200)
        else:
            data = b'{"message": "Not Found"}'
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer((addr, 443), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
open(ready, "w").close()
server.serve_forever()
