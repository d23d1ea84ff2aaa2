import org.apache.zookeeper.*;
import org.apache.zookeeper.client.ZKClientConfig;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.ClientInfo;
import org.apache.zookeeper.data.Id;
import java.util.Collections;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/** The stock Java client's SASL DIGEST-MD5 login (the JAAS file's Client
 *  section): a node with a `sasl` ACL only that user reads; a client
 *  without SASL is refused it, a login with a wrong password (the JAAS
 *  file's Wrong section) ends in AuthFailed. Prints one line per step;
 *  exits 1 when an awaited event does not come. */
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
    if (!authed.await(20, TimeUnit.SECONDS)) {
      System.out.println("no SaslAuthenticated within 20s");
      System.exit(1);
    }
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
    if (!up.await(20, TimeUnit.SECONDS)) {
      System.out.println("no SyncConnected within 20s");
      System.exit(1);
    }
    System.out.println("anon " + get(anon, "/sasl-only") + " ids" + ids(anon));
    anon.close();

    ZKClientConfig wrong = new ZKClientConfig();
    wrong.setProperty(ZKClientConfig.LOGIN_CONTEXT_NAME_KEY, "Wrong");
    BlockingQueue<Watcher.Event.KeeperState> states = new ArrayBlockingQueue<>(16);
    ZooKeeper bad = new ZooKeeper(hp, 10000, e -> states.offer(e.getState()), wrong);
    StringBuilder seen = new StringBuilder();
    for (;;) {
      Watcher.Event.KeeperState st = states.poll(20, TimeUnit.SECONDS);
      if (st == null) {
        System.out.println("wrong password: no AuthFailed within 20s, saw" + seen);
        System.exit(1);
      }
      seen.append(" ").append(st);
      if (st == Watcher.Event.KeeperState.AuthFailed) break;
    }
    System.out.println("wrong password" + seen);
    bad.close();
  }
}
