#!/usr/bin/python3
"""A local HTTP receiver for the webhook tests: records each POST to DIR as N.json
({"path", "headers", "body"}) and answers 204, or 500 for the first --fail-first
requests. Prints READY when it listens.

usage: http_receiver.py PORT DIR [--fail-first N] [--cert CERT --key KEY]

With a certificate it speaks HTTPS.
"""
import argparse
import http.server
import json
import os
import ssl
import threading

lock = threading.Lock()
state = {"n": 0, "fail": 0}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("dir")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--cert")
    p.add_argument("--key")
    a = p.parse_args()
    state["fail"] = a.fail_first

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with lock:
                if state["fail"] > 0:
                    state["fail"] -= 1
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"try again later")
                    return
                state["n"] += 1
                n = state["n"]
            record = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            base = os.path.join(a.dir, "%04d" % n)
            with open(base + ".tmp", "w") as f:
                json.dump(record, f)
            os.rename(base + ".tmp", base + ".json")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("READY", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
