#!/usr/bin/env python3
"""A real SMTP server on loopback for the on-call email test: aiosmtpd's
(PyPI, pinned in scripts/test) SMTP protocol on a free port. Prints
"listening on PORT", then one JSON line per message received
({"from", "to", "data"}), and serves until its stdin closes.

usage: server.py
"""
import asyncio, json, sys

from aiosmtpd.smtp import SMTP


class Print:
    async def handle_DATA(self, server, session, envelope):
        print(json.dumps({
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        }), flush=True)
        return "250 Message accepted"


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Print()), "127.0.0.1", 0)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    # Until the test closes stdin.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
