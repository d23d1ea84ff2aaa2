import org.apache.zookeeper.*;
import org.apache.zookeeper.data.ClientInfo;
import java.util.concurrent.CountDownLatch;

/** The stock Java client over TLS with a client certificate (the
 *  zookeeper.ssl.* properties name the PEM files): prints whoAmI. */
public class X509Ids {
  public static void main(String[] a) throws Exception {
    CountDownLatch up = new CountDownLatch(1);
    ZooKeeper z = new ZooKeeper(a[0], 10000, e -> {
      if (e.getState() == Watcher.Event.KeeperState.SyncConnected) up.countDown();
    });
    up.await();
    StringBuilder b = new StringBuilder("ids");
    for (ClientInfo c : z.whoAmI()) b.append(" ").append(c.getAuthScheme()).append("=").append(c.getUser());
    System.out.println(b);
    z.close();
  }
}
