#!/usr/bin/env python3
"""A man in the middle for peer links, for tests.

    mitm_proxy.py LISTEN_PORT TARGET_PORT DIR

Relays every connection on 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT,
appending every byte it relays (both ways) to DIR/seen. A command written
to DIR/cmd acts on the next chunk going to the target, then is removed:
"flip" flips one byte of it, "inject HEX" sends the bytes HEX before it.
Writes DIR/ready once listening; exits after five minutes at most."""
import os
import select
import socket
import sys
import threading
import time


def main():
    listen_port, target_port, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    seen = open(os.path.join(d, "seen"), "ab", buffering=0)
    cmd_path = os.path.join(d, "cmd")
    lock = threading.Lock()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen(16)
    open(os.path.join(d, "ready"), "w").close()

    def command():
        try:
            with open(cmd_path) as f:
                c = f.read().strip()
            os.remove(cmd_path)
            return c
        except OSError:
            return ""

    def relay(a):
        try:
            b = socket.create_connection(("127.0.0.1", target_port))
        except OSError:
            a.close()
            return
        for s in (a, b):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                r, _, _ = select.select([a, b], [], [], 1)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    out = b if s is a else a
                    if out is b:
                        c = command()
                        if c == "flip":
                            i = len(data) // 2
                            data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
                        elif c.startswith("inject "):
                            data = bytes.fromhex(c[7:]) + data
                    with lock:
                        seen.write(data)
                    out.sendall(data)
        except OSError:
            pass
        finally:
            a.close()
            b.close()

    deadline = time.time() + 300
    srv.settimeout(1)
    while time.time() < deadline:
        try:
            a, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=relay, args=(a,), daemon=True).start()


if __name__ == "__main__":
    main()
