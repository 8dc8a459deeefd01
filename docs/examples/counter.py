#!/usr/bin/env python3
"""Example application for `bft-node --app exec:'python3 docs/examples/counter.py'`.

It counts executed requests and echoes each operation back, prefixed by the count.
Protocol (one JSON object per line on stdin, exactly one reply line on stdout):

  {"type":"execute","index":N,"seq":S,"client":C,"timestamp":T,"operation":"<base64>"}
      -> {"result":"<base64 of b'<count> <operation>'>"}
  {"type":"snapshot"}                      -> {"state":"<base64>"}
  {"type":"restore","state":"<base64>"}   -> {"ok":true}

The state must be deterministic: every replica runs the same requests in the same order and
must produce the same replies and snapshot bytes. Never print anything else to stdout (use
stderr for diagnostics), and flush after every reply.
"""
import base64
import json
import sys


def main():
    count = 0
    for line in sys.stdin:
        msg = json.loads(line)
        kind = msg.get("type")
        if kind == "execute":
            count += 1
            op = base64.b64decode(msg["operation"])
            result = str(count).encode() + b" " + op
            reply = {"result": base64.b64encode(result).decode()}
        elif kind == "snapshot":
            # Fixed-width big-endian count: equal states give equal bytes.
            reply = {"state": base64.b64encode(count.to_bytes(8, "big")).decode()}
        elif kind == "restore":
            state = base64.b64decode(msg["state"])
            if len(state) != 8:
                print(f"counter.py: bad snapshot of {len(state)} bytes", file=sys.stderr)
                sys.exit(1)
            count = int.from_bytes(state, "big")
            reply = {"ok": True}
        else:
            print(f"counter.py: unknown message type {kind!r}", file=sys.stderr)
            sys.exit(1)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
