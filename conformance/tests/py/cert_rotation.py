"""Certificate rotation seen by clients that stay connected: a kazoo
session on the secure ZooKeeper port and a TLS connection to the etcd
client port (HTTP/1.1 keep-alive to the gateway) opened with the old
certificate keep working after the files are replaced; new connections
get the new certificate (its SHA-256 fingerprint is the file's), and a
client trusting only the new CA connects. Protocol on stdin/stdout: prints
READY, waits for a line, prints "all ok"."""
import hashlib
import socket
import ssl
import sys
import time

from kazoo.client import KazooClient

etcd, zk_secure, certs = sys.argv[1], sys.argv[2], sys.argv[3]


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


def file_fingerprint():
    with open(certs + "/server.pem") as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def context(ca):
    ctx = ssl.create_default_context(cafile=certs + "/" + ca)
    ctx.check_hostname = False
    return ctx


def served(addr, ca):
    """A new TLS connection: the served certificate's fingerprint."""
    with socket.create_connection(hostport(addr), timeout=5) as raw:
        with context(ca).wrap_socket(raw) as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def version(s):
    s.sendall(b"GET /version HTTP/1.1\r\nHost: janus\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")]
    while length and len(body) < length[0]:
        body += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"etcdserver" in body, body
    return body


old = file_fingerprint()
assert served(etcd, "first-ca.pem") == old
assert served(zk_secure, "first-ca.pem") == old

events = []
zk = KazooClient(hosts=zk_secure, use_ssl=True, ca=certs + "/first-ca.pem",
                 verify_certs=True, timeout=10)
zk.add_listener(lambda state: events.append(state))
zk.start(timeout=15)
session = zk.client_id[0]
zk.create("/rotation", b"before")
etcd_conn = context("first-ca.pem").wrap_socket(socket.create_connection(hostport(etcd), timeout=5))
version(etcd_conn)

seen = list(events)
print("READY", flush=True)
sys.stdin.readline()

new = file_fingerprint()
assert new != old
# New connections get the new certificate (reload is checked at most once
# a second, on a new connection).
deadline = time.time() + 10
for addr in (etcd, zk_secure):
    while True:
        try:
            if served(addr, "second-ca.pem") == new:
                break
        except (ssl.SSLError, OSError):
            pass
        assert time.time() < deadline, "%s never served the new certificate" % addr
        time.sleep(0.2)
    try:
        served(addr, "first-ca.pem")
        raise SystemExit("%s: a client trusting only the old CA still connects" % addr)
    except ssl.SSLCertVerificationError:
        pass

# The connections opened before the rotation keep working.
zk.set("/rotation", b"after")
assert zk.get("/rotation")[0] == b"after"
assert zk.client_id[0] == session
assert events == seen, "the old session was disturbed: %r" % events[len(seen):]
version(etcd_conn)
etcd_conn.close()
zk.stop()
zk.close()

fresh = KazooClient(hosts=zk_secure, use_ssl=True, ca=certs + "/second-ca.pem",
                    verify_certs=True, timeout=10)
fresh.start(timeout=15)
assert fresh.get("/rotation")[0] == b"after"
fresh.stop()
fresh.close()
print("all ok", flush=True)
