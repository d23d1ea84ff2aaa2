"""Null znode data through kazoo (its test_create_null_data and
test_set_null_data, plus a transaction; kazoo refuses None inside one), printed one answer per
line so the same run against ZooKeeper and janus can be compared."""
import sys

from kazoo.client import KazooClient

zk = KazooClient(hosts=sys.argv[1], timeout=10)
zk.start(timeout=15)


def show(label, r):
    data, stat = r
    print(label, repr(data), "dataLength=%d" % stat.dataLength, "version=%d" % stat.version)


zk.create("/nulldata", None)
show("create None:", zk.get("/nulldata"))
zk.create("/emptydata", b"")
show("create b'':", zk.get("/emptydata"))
zk.create("/setnull", b"a value")
zk.set("/setnull", None)
show("set None:", zk.get("/setnull"))
zk.set("/setnull", b"")
show("set b'':", zk.get("/setnull"))
t = zk.transaction()
t.set_data("/setnull", b"")
t.create("/txempty", b"")
print("txn:", [r if isinstance(r, str) else "version=%d" % r.version for r in t.commit()])
show("after txn:", zk.get("/setnull"))
print("exists dataLength:", zk.exists("/nulldata").dataLength)
zk.stop()
print("all ok")
