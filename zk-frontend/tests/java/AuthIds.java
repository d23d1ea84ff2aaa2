import org.apache.zookeeper.*;
import org.apache.zookeeper.data.ClientInfo;
import java.util.concurrent.CountDownLatch;

/** Identities with the stock Java client: addAuthInfo then an immediate
 *  read, the super digest, whoAmI. Prints one line per step. */
public class AuthIds {
  static ZooKeeper connect(String hp) throws Exception {
    CountDownLatch up = new CountDownLatch(1);
    ZooKeeper z = new ZooKeeper(hp, 10000, e -> {
      if (e.getState() == Watcher.Event.KeeperState.SyncConnected) up.countDown();
    });
    up.await();
    return z;
  }
  static String ids(ZooKeeper z) throws Exception {
    StringBuilder b = new StringBuilder();
    for (ClientInfo c : z.whoAmI()) b.append(" ").append(c.getAuthScheme()).append("=").append(c.getUser());
    return b.toString();
  }
  static String get(ZooKeeper z, String path) {
    try { return new String(z.getData(path, false, null)); }
    catch (KeeperException e) { return e.code().name(); }
    catch (InterruptedException e) { return "interrupted"; }
  }
  public static void main(String[] a) throws Exception {
    String hp = a[0];
    ZooKeeper owner = connect(hp);
    owner.addAuthInfo("digest", "u:p".getBytes());
    owner.create("/sec", "secret".getBytes(), ZooDefs.Ids.CREATOR_ALL_ACL, CreateMode.PERSISTENT);
    owner.close();
    // Not waiting for the connection: the auth packet and the read go
    // out right behind the ConnectRequest.
    ZooKeeper eager = new ZooKeeper(hp, 10000, e -> {});
    eager.addAuthInfo("digest", "u:p".getBytes());
    System.out.println("eager " + get(eager, "/sec"));
    eager.close();
    ZooKeeper anon = connect(hp);
    System.out.println("anon " + get(anon, "/sec") + " ids" + ids(anon));
    anon.close();
    ZooKeeper sup = connect(hp);
    sup.addAuthInfo("digest", "super:test".getBytes());
    System.out.println("super " + get(sup, "/sec") + " ids" + ids(sup));
    sup.setData("/sec", "changed".getBytes(), -1);
    System.out.println("super set " + get(sup, "/sec"));
    sup.close();
    ZooKeeper other = connect(hp);
    other.addAuthInfo("digest", "x:y".getBytes());
    System.out.println("other " + get(other, "/sec") + " ids" + ids(other));
    other.close();
  }
}
