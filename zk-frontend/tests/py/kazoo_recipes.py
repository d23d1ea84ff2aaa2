"""kazoo recipes against a ZooKeeper endpoint, under concurrency.

Usage: kazoo_recipes.py HOST:PORT. Exits non-zero (with a message) on the
first wrong result. Each recipe runs with several clients in threads.
"""
import sys
import threading
import time

from kazoo.client import KazooClient
from kazoo.recipe.barrier import Barrier, DoubleBarrier
from kazoo.recipe.counter import Counter
from kazoo.recipe.election import Election
from kazoo.recipe.lock import Lock, Semaphore
from kazoo.recipe.partitioner import SetPartitioner  # noqa: F401 (import check)
from kazoo.recipe.party import Party
from kazoo.recipe.queue import LockingQueue, Queue

HOSTS = sys.argv[1]
N = 5


def client():
    c = KazooClient(hosts=HOSTS, timeout=10)
    c.start(timeout=15)
    return c


def check(cond, msg):
    if not cond:
        print("FAIL:", msg)
        sys.exit(1)


def run_threads(fn, n=N):
    errors = []

    def wrap(i):
        try:
            fn(i)
        except Exception as e:  # report any thread failure
            errors.append(repr(e))

    ts = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    check(not errors, "thread errors: %s" % errors)


clients = [client() for _ in range(N)]

# Lock: mutual exclusion of a read-modify-write.
shared = {"inside": 0, "max": 0, "count": 0}
mu = threading.Lock()


def locker(i):
    lock = Lock(clients[i], "/recipes/lock")
    for _ in range(5):
        with lock:
            with mu:
                shared["inside"] += 1
                shared["max"] = max(shared["max"], shared["inside"])
            time.sleep(0.005)
            with mu:
                shared["inside"] -= 1
                shared["count"] += 1


run_threads(locker)
check(shared["max"] == 1, "lock admitted %d holders" % shared["max"])
check(shared["count"] == N * 5, "lock rounds %d" % shared["count"])

# Counter: concurrent increments are not lost.
def counting(i):
    c = Counter(clients[i], "/recipes/counter")
    for _ in range(10):
        c += 1


run_threads(counting)
check(Counter(clients[0], "/recipes/counter").value == N * 10, "counter lost increments")

# Semaphore with 2 leases.
sem_state = {"inside": 0, "max": 0}


def sem(i):
    s = Semaphore(clients[i], "/recipes/sem", max_leases=2)
    for _ in range(3):
        with s:
            with mu:
                sem_state["inside"] += 1
                sem_state["max"] = max(sem_state["max"], sem_state["inside"])
            time.sleep(0.01)
            with mu:
                sem_state["inside"] -= 1


run_threads(sem)
check(sem_state["max"] <= 2, "semaphore admitted %d" % sem_state["max"])

# Election: exactly one leader at a time; leadership passes on.
leaders = []


def elect(i):
    e = Election(clients[i], "/recipes/election", identifier="c%d" % i)

    def lead():
        with mu:
            leaders.append(i)
        time.sleep(0.02)

    e.run(lead)


run_threads(elect)
check(sorted(leaders) == list(range(N)), "leaders: %s" % leaders)

# Queue and LockingQueue: every item delivered exactly once.
q = Queue(clients[0], "/recipes/queue")
for i in range(20):
    q.put(str(i).encode())
got = []


def consume(i):
    qq = Queue(clients[i], "/recipes/queue")
    while True:
        item = qq.get()
        if item is None:
            return
        with mu:
            got.append(int(item))


run_threads(consume)
check(sorted(got) == list(range(20)), "queue items: %s" % sorted(got))

lq = LockingQueue(clients[0], "/recipes/lqueue")
for i in range(10):
    lq.put(str(i).encode())
lgot = []


def lconsume(i):
    qq = LockingQueue(clients[i], "/recipes/lqueue")
    while True:
        item = qq.get(timeout=1)
        if item is None:
            return
        with mu:
            lgot.append(int(item))
        qq.consume()


run_threads(lconsume)
check(sorted(lgot) == list(range(10)), "locking queue items: %s" % sorted(lgot))

# Barrier and DoubleBarrier.
b = Barrier(clients[0], "/recipes/barrier")
b.create()
passed = []


def waiter(i):
    if Barrier(clients[i], "/recipes/barrier").wait(10):
        with mu:
            passed.append(i)


ts = [threading.Thread(target=waiter, args=(i,)) for i in range(1, N)]
for t in ts:
    t.start()
time.sleep(0.3)
check(not passed, "barrier let clients through early")
b.remove()
for t in ts:
    t.join(15)
check(sorted(passed) == list(range(1, N)), "barrier released %s" % passed)


def double(i):
    d = DoubleBarrier(clients[i], "/recipes/dbarrier", N)
    d.enter()
    d.leave()


run_threads(double)

# Party: membership follows joins and leaves.
parties = [Party(clients[i], "/recipes/party", "m%d" % i) for i in range(N)]
for p in parties:
    p.join()
check(len(Party(clients[0], "/recipes/party")) == N, "party size")
parties[0].leave()
check(len(Party(clients[0], "/recipes/party")) == N - 1, "party size after leave")

# Ephemerals vanish when a session closes; another client sees it.
eph = client()
eph.create("/recipes/eph", ephemeral=True)
seen = threading.Event()


def watch(event):
    if event.type == "DELETED":
        seen.set()


check(clients[0].exists("/recipes/eph", watch=watch) is not None, "ephemeral missing")
eph.stop()
eph.close()
check(seen.wait(10), "no NodeDeleted after the owner closed its session")

for c in clients:
    c.stop()
print("kazoo recipes: all ok")
