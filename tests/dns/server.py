#!/usr/bin/env python3
"""A real DNS server on loopback for the gateway's discovery test: dnslib's
DNSServer (PyPI, pinned in scripts/test), answering A queries from a JSON
file read again at every query ({"shops.test.": ["127.0.0.2", ...]}, TTL
0), so a test changes the answers by rewriting the file. Prints
"listening on PORT", then serves until its stdin closes.

usage: server.py ANSWERS.json
"""
import json, sys

from dnslib import A, QTYPE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class FileResolver(BaseResolver):
    def __init__(self, path):
        self.path = path

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname)
        try:
            with open(self.path) as f:
                answers = json.load(f)
        except (OSError, ValueError):
            answers = {}
        if request.q.qtype in (QTYPE.A, QTYPE.ANY):
            for ip in answers.get(name, []):
                reply.add_answer(RR(name, QTYPE.A, rdata=A(ip), ttl=0))
        return reply


def main():
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data")
    server = DNSServer(FileResolver(sys.argv[1]), port=0, address="127.0.0.1", logger=quiet)
    server.start_thread()
    print(f"listening on {server.server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
