#!/usr/bin/python3
"""Test fixture: records every POST (headers, body, arrival time) as one JSON line, answers 200."""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST, PORT, RECORD = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        entry = {
            "path": self.path,
            "headers": dict(self.headers),
            "body": body.decode("utf-8", "replace"),
            "received_at": time.time(),
        }
        with open(RECORD, "a", encoding="utf-8") as record:
            record.write(json.dumps(entry) + "\n")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")


ThreadingHTTPServer((HOST, PORT), Recorder).serve_forever()
