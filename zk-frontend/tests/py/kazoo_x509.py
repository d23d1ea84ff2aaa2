"""kazoo with use_ssl=True and a client certificate on janus's secure
ZooKeeper port: the x509 scheme (ZooKeeper's X509AuthenticationProvider).
A certificate's subject is an identity ACLs name; the configured subject is
the superuser; a client without it, or with another subject, is refused."""
import sys

from kazoo.client import KazooClient
from kazoo.exceptions import InvalidACLError, NoAuthError
from kazoo.security import ACL, Id, Permissions

secure, plain, certs = sys.argv[1], sys.argv[2], sys.argv[3]


def tls_client(name):
    zk = KazooClient(hosts=secure, use_ssl=True, verify_certs=True,
                     ca=certs + "/ca.pem", certfile=certs + "/" + name + ".pem",
                     keyfile=certs + "/" + name + ".key", timeout=10)
    zk.start(timeout=15)
    return zk


me = "CN=client,O=acme"
client = tls_client("client")
client.create("/x509", b"mine", acl=[ACL(Permissions.ALL, Id("x509", me))])
assert client.get("/x509")[0] == b"mine"
acl, _ = client.get_acls("/x509")
assert [(a.perms, a.id.scheme, a.id.id) for a in acl] == [(31, "x509", me)], acl
# The auth scheme expands to the certificate's identity (not the ip).
client.create("/x509-auth", b"a", acl=[ACL(Permissions.READ, Id("auth", ""))])
acl, _ = client.get_acls("/x509-auth")
assert [(a.perms, a.id.scheme, a.id.id) for a in acl] == [(1, "x509", me)], acl
try:
    client.set_acls("/x509", [ACL(Permissions.ALL, Id("x509", "not a dn"))])
    raise SystemExit("setACL with an invalid x509 name was accepted")
except InvalidACLError:
    pass
# setACL with scheme x509 naming another subject is accepted.
client.create("/x509-other", b"o")
client.set_acls("/x509-other", [ACL(Permissions.READ, Id("x509", "CN=other,O=acme"))])
client.stop()
client.close()

other = tls_client("other")
try:
    other.get("/x509")
    raise SystemExit("another subject read the node")
except NoAuthError:
    pass
assert other.get("/x509-other")[0] == b"o"
other.stop()
other.close()

anon = KazooClient(hosts=plain, timeout=10)
anon.start(timeout=15)
try:
    anon.get("/x509")
    raise SystemExit("a client without a certificate read the node")
except NoAuthError:
    pass
anon.stop()
anon.close()

admin = tls_client("admin")
assert admin.get("/x509")[0] == b"mine"
admin.set("/x509", b"changed by the superuser")
assert admin.get("/x509-other")[0] == b"o"
admin.stop()
admin.close()
print("all ok")
