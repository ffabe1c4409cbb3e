#!/usr/bin/env python3
"""A webhook sink for trying Tocsin out: prints every notification it receives."""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 5001


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        msg = json.loads(body)
        names = ", ".join(a["labels"].get("alertname", "?") + "=" + a["status"] for a in msg["alerts"])
        print(f"[{msg['status'].upper()}] receiver={msg['receiver']} group={msg['groupKey']} "
              f"reason={msg.get('notification_reason')}: {names}", flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


class Server(HTTPServer):
    # Python's default backlog of 5 drops connections when many groups notify at once.
    request_queue_size = 1024


Server(("127.0.0.1", PORT), Sink).serve_forever()
