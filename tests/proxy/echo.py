#!/usr/bin/env python3
"""A stand-in upstream for the proxy tests: shows what a proxy sends on.

Usage: echo.py PORT   (listens on 127.0.0.1:PORT, HTTP/1.1 with keep-alive)

GET /events?sse=1  answers like a stream but *without* ssehub's
                   "X-Accel-Buffering: no": 5 events 200 ms apart, each
                   carrying the time it was written, then the connection
                   closes. A proxy that buffers delivers them late.
anything else      200 JSON: the request line's version, the headers as
                   received (names in lower case; repeated ones joined with
                   ", "), and the upstream connection's client port (equal
                   across two requests = the proxy reused its connection).
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/events") and "sse=1" in self.path:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for n in range(5):
                if n:
                    time.sleep(0.2)
                line = "data: %d %.6f\n\n" % (n, time.time())
                self.wfile.write(line.encode())
                self.wfile.flush()
            return
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = headers[name] + ", " + value if name in headers else value
        body = json.dumps(
            {"version": self.request_version, "path": self.path,
             "headers": headers, "port": self.client_address[1]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)



ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("echo listening on 127.0.0.1:%d" % server.server_port, flush=True)
server.serve_forever()
