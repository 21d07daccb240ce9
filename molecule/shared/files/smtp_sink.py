#!/usr/bin/python3
"""Test fixture: an SMTP server that accepts every message and records it (envelope, the
message's headers and body, arrival time) as one JSON line. Enough of RFC 5321 for
Alertmanager's client: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no TLS, no AUTH."""

import email
import email.policy
import json
import socketserver
import sys
import time

HOST, PORT, RECORD = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class Session(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        self.reply("220 smtp-sink ready")
        sender, recipients = None, []
        while line := self.rfile.readline():
            verb, _, argument = line.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.reply("250-smtp-sink")
                self.reply("250 8BITMIME")
            elif verb in ("HELO", "NOOP"):
                self.reply("250 ok")
            elif verb == "MAIL":
                sender, recipients = argument.partition(":")[2].strip("<> "), []
                self.reply("250 ok")
            elif verb == "RCPT":
                recipients.append(argument.partition(":")[2].strip("<> "))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                self.record(sender, recipients, self.read_data())
                self.reply("250 queued")
            elif verb == "RSET":
                sender, recipients = None, []
                self.reply("250 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")

    def read_data(self) -> bytes:
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)  # dot-unstuffing
        return b"".join(lines)

    @staticmethod
    def record(sender: str | None, recipients: list[str], data: bytes) -> None:
        message = email.message_from_bytes(data, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain", "html"))
        entry = {
            "from": sender,
            "to": recipients,
            "headers": dict(message.items()),
            "body": body.get_content() if body else "",
            "received_at": time.time(),
        }
        with open(RECORD, "a", encoding="utf-8") as record:
            record.write(json.dumps(entry) + "\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


Server((HOST, PORT), Session).serve_forever()
