"""Bad input on the TLS ports of one server set (janus, or real etcd plus
real ZooKeeper): garbage instead of a ClientHello and a client
certificate from another CA, on the etcd client port, the peer port and
the secure ZooKeeper port. Before any of it, a kazoo session on the secure
ZooKeeper port and a TLS keep-alive connection to the etcd client port
(HTTP/1.1, `GET /version`) are opened; after each bad input both must
still work and new connections must work.

Prints `outcome <port> <input>: <what happened>` lines (the same on janus
and the reference), `detail ...` lines (the bytes or TLS alert seen,
reported, not compared), and `all ok` at the end.
Arguments: etcd client addr, peer addr, ZooKeeper secure addr, a dir with
ca.pem, client.pem/.key (signed by ca.pem) and stranger.pem/.key (signed
by another CA)."""
import socket
import ssl
import sys
import time

from kazoo.client import KazooClient

etcd, peer, zk_secure, certs = sys.argv[1:5]
GARBAGE = b"\x00\x01\x02\x03 not a ClientHello \xff\xfe\xfd" * 8


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


def context(name):
    ctx = ssl.create_default_context(cafile=certs + "/ca.pem")
    ctx.check_hostname = False
    ctx.load_cert_chain(certs + "/" + name + ".pem", certs + "/" + name + ".key")
    return ctx


def version(s):
    s.sendall(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("etcd connection closed: %r" % data)
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
              if l.lower().startswith(b"content-length")]
    while length and len(body) < length[0]:
        body += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"etcdserver" in body, body


def kazoo():
    zk = KazooClient(hosts=zk_secure, use_ssl=True, ca=certs + "/ca.pem",
                     certfile=certs + "/client.pem", keyfile=certs + "/client.key",
                     verify_certs=True, timeout=10)
    zk.start(timeout=20)
    return zk


def garbage(addr):
    """Sends garbage on a fresh TCP connection; what comes back before the
    server closes it."""
    s = socket.create_connection(hostport(addr), timeout=5)
    s.sendall(GARBAGE)
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return "closed", got
            got += chunk
    except ConnectionResetError:
        return "closed", got
    except socket.timeout:
        return "left open", got
    finally:
        s.close()


def foreign(addr, http):
    """A TLS connection with a certificate from another CA, then one
    request: where it is refused."""
    raw = socket.create_connection(hostport(addr), timeout=5)
    try:
        s = context("stranger").wrap_socket(raw)
    except ssl.SSLError as e:
        return "refused", "handshake: %s" % e.reason
    except (ConnectionResetError, BrokenPipeError) as e:
        return "refused", "handshake: %s" % type(e).__name__
    try:
        # TLS 1.3 verifies the client's certificate after the client's
        # Finished: the refusal arrives on the first read.
        s.sendall(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n" if http else GARBAGE)
        data = s.recv(4096)
        if data:
            return "answered", data[:60]
        return "refused", "closed without an alert"
    except ssl.SSLError as e:
        return "refused", "after handshake: %s" % e.reason
    except (ConnectionResetError, BrokenPipeError) as e:
        return "refused", "after handshake: %s" % type(e).__name__
    except socket.timeout:
        return "left open", ""
    finally:
        s.close()


zk = kazoo()
zk.ensure_path("/bad-input")
etcd_conn = context("client").wrap_socket(socket.create_connection(hostport(etcd), timeout=5))
version(etcd_conn)
round_ = 0


def still_serves(after):
    """The connections opened first and new ones work."""
    global round_
    round_ += 1
    value = ("%s %d" % (after, round_)).encode()
    zk.set("/bad-input", value)
    assert zk.get("/bad-input")[0] == value, after
    version(etcd_conn)
    with context("client").wrap_socket(socket.create_connection(hostport(etcd), timeout=5)) as s:
        version(s)
    fresh = kazoo()
    assert fresh.get("/bad-input")[0] == value, after
    fresh.stop()
    fresh.close()


for name, addr, http in (("etcd-client", etcd, True), ("peer", peer, False),
                         ("zk-secure", zk_secure, False)):
    what, got = garbage(addr)
    print("outcome %s garbage: %s, %d bytes back" % (name, what, len(got)), flush=True)
    print("detail %s garbage: %r" % (name, got[:40]), flush=True)
    still_serves(name + " garbage")
    what, detail = foreign(addr, http)
    print("outcome %s foreign-ca: %s" % (name, what), flush=True)
    print("detail %s foreign-ca: %s" % (name, detail), flush=True)
    still_serves(name + " foreign-ca")

etcd_conn.close()
zk.stop()
zk.close()
print("all ok", flush=True)
