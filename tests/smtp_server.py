#!/usr/bin/python3
"""A real SMTP server for the notice tests (Debian's python3-aiosmtpd).

Writes each message it accepts to DIR as N.eml (raw), N.json (envelope sender and
recipients, the headers as parsed, the decoded body). Optional STARTTLS (required when
given a certificate) and AUTH with one user. Prints READY when it listens.

usage: smtp_server.py PORT DIR [--cert CERT --key KEY [--implicit-tls]] [--user USER --password PW]

With --implicit-tls the certificate is used for TLS from the first byte (SMTPS, as on
port 465) instead of STARTTLS.
"""
import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Store:
    def __init__(self, directory):
        self.dir = directory
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.n += 1
            n = self.n
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        try:
            body = msg.get_content()
        except Exception as e:  # a test reads this and fails on it
            body = "UNDECODABLE: %s" % e
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": [[k, str(v)] for k, v in msg.items()],
            "body": body,
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(getattr(session, "authenticated", False)),
        }
        base = os.path.join(self.dir, "%04d" % n)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(raw)
        with open(base + ".json.tmp", "w") as f:
            json.dump(record, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 OK"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("dir")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--implicit-tls", action="store_true")
    a = p.parse_args()
    kw = {}
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        if a.implicit_tls:
            kw.update(ssl_context=ctx)
        else:
            kw.update(tls_context=ctx, require_starttls=True)
    if a.user:
        def check(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login == a.user.encode()
                and auth_data.password == a.password.encode()
            )
            return AuthResult(success=ok, handled=False)

        kw.update(authenticator=check, auth_required=True, auth_require_tls=bool(a.cert))
    controller = Controller(Store(a.dir), hostname="127.0.0.1", port=a.port, **kw)
    controller.start()
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
