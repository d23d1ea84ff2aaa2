import org.apache.zookeeper.*;
import org.apache.zookeeper.client.ZKClientConfig;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.ClientInfo;
import org.apache.zookeeper.data.Id;
import java.util.Collections;
import java.util.concurrent.CountDownLatch;

/** The stock Java client's SASL DIGEST-MD5 login (the JAAS file's Client
 *  section): a node with a `sasl` ACL only that user reads. Prints one
 *  line per step. */
public class SaslDigest {
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
    CountDownLatch authed = new CountDownLatch(1);
    ZooKeeper owner = new ZooKeeper(hp, 10000, e -> {
      if (e.getState() == Watcher.Event.KeeperState.SaslAuthenticated) authed.countDown();
    });
    authed.await();
    owner.create("/sasl-only", "for alice".getBytes(),
        Collections.singletonList(new ACL(ZooDefs.Perms.ALL, new Id("sasl", "alice"))),
        CreateMode.PERSISTENT);
    System.out.println("owner " + get(owner, "/sasl-only") + " ids" + ids(owner));
    System.out.println("acl " + owner.getACL("/sasl-only", null));
    owner.close();

    ZKClientConfig plain = new ZKClientConfig();
    plain.setProperty(ZKClientConfig.ENABLE_CLIENT_SASL_KEY, "false");
    CountDownLatch up = new CountDownLatch(1);
    ZooKeeper anon = new ZooKeeper(hp, 10000, e -> {
      if (e.getState() == Watcher.Event.KeeperState.SyncConnected) up.countDown();
    }, plain);
    up.await();
    System.out.println("anon " + get(anon, "/sasl-only") + " ids" + ids(anon));
    anon.close();
  }
}
