#!/usr/bin/python3
"""A real SMTP server for Tocsin's email tests (aiosmtpd, Debian package python3-aiosmtpd).

Usage: smtp_server.py OUT_DIR [--starttls CERT KEY] [--implicit-tls CERT KEY]
                              [--auth USER:PASSWORD] [--no-plain]
Prints "LISTENING <port>" once it accepts connections, then writes each message it receives to
OUT_DIR/<n>.json: envelope, whether TLS was on, the AUTH mechanism and login used, every header
and the decoded text and HTML parts. Runs until killed."""
import json, os, socket, ssl, sys, time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from email import message_from_bytes, policy

args = sys.argv[1:]
out = args.pop(0)
opts = {}
while args:
    a = args.pop(0)
    if a in ("--starttls", "--implicit-tls"):
        opts[a] = (args.pop(0), args.pop(0))
    elif a == "--auth":
        opts[a] = args.pop(0)
    else:
        opts[a] = True


def tls_context(pair):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*pair)
    return ctx


class Handler:
    count = 0

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        parts = {}
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                parts[part.get_content_subtype()] = part.get_content().replace("\r\n", "\n")
        Handler.count += 1
        record = {
            "helo": session.host_name,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "auth": getattr(session, "tocsin_login", None),
            "mechanism": getattr(session, "tocsin_mechanism", None),
            "headers": {k: str(v) for k, v in msg.items()},
            "text": parts.get("plain"),
            "html": parts.get("html"),
        }
        tmp = os.path.join(out, f".{Handler.count}.json")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(out, f"{Handler.count}.json"))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    user, password = opts["--auth"].split(":", 1)
    ok = auth_data.login.decode() == user and auth_data.password.decode() == password
    session.tocsin_mechanism = mechanism
    session.tocsin_login = auth_data.login.decode()
    return AuthResult(success=ok)


sock = socket.socket()
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]
sock.close()

kwargs = {}
if "--starttls" in opts:
    kwargs["tls_context"] = tls_context(opts["--starttls"])
if "--auth" in opts:
    kwargs["authenticator"] = authenticator
    kwargs["auth_required"] = True
    # PLAIN and LOGIN over a plain connection are what the tests exercise when TLS is off.
    kwargs["auth_require_tls"] = "--starttls" in opts or "--implicit-tls" in opts
    if "--no-plain" in opts:
        kwargs["auth_exclude_mechanism"] = ["PLAIN"]
controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=port,
    ssl_context=tls_context(opts["--implicit-tls"]) if "--implicit-tls" in opts else None,
    server_hostname="localhost",
    **kwargs,
)
try:
    controller.start()
except Exception:
    # The readiness self-check of aiosmtpd cannot verify our test CA; the server is up anyway.
    pass
print(f"LISTENING {port}", flush=True)
while True:
    time.sleep(3600)
