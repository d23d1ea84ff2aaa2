"""kazoo with use_ssl=True on janus's secure ZooKeeper port: a session,
writes and reads over TLS, seen on the plain port too; a plain-text client
is not served on the secure port."""
import sys

from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError

secure, plain_port = sys.argv[1], sys.argv[2]
plain_on_secure = secure
zk = KazooClient(hosts=secure, use_ssl=True, verify_certs=False, timeout=10)
zk.start(timeout=15)
zk.create("/tls/a", b"over tls", makepath=True)
data, stat = zk.get("/tls/a")
assert data == b"over tls", data
assert zk.get_children("/tls") == ["a"]
zk.stop()
zk.close()

other = KazooClient(hosts=plain_port, timeout=10)
other.start(timeout=15)
assert other.get("/tls/a")[0] == b"over tls"
other.stop()
other.close()

plain = KazooClient(hosts=plain_on_secure, timeout=2, connection_retry={"max_tries": 1})
try:
    plain.start(timeout=4)
    print("plain client connected to the secure port")
    sys.exit(1)
except KazooTimeoutError:
    pass
finally:
    plain.stop()
    plain.close()
print("all ok")
