// A consumer of Apache Curator's service discovery (curator-x-discovery), as a Java service reads
// it: a ServiceCache of one service name, which watches {basePath}/{name} and keeps the instances.
// Each time the cache changes (and once at start) it prints one JSON line with what it holds:
//   {"t": <epoch seconds>, "instances": [{"id","address","port","enabled","payload"}]}
// Usage: Consumer <connectString> <basePath> <serviceName>   (stops at the end of its stdin)
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.x.discovery.ServiceCache;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.details.JsonInstanceSerializer;
import org.apache.curator.x.discovery.details.ServiceCacheListener;
import com.fasterxml.jackson.databind.ObjectMapper;

public class Consumer {
    private static final ObjectMapper JSON = new ObjectMapper();

    @SuppressWarnings({"rawtypes", "unchecked"})
    public static void main(String[] args) throws Exception {
        CuratorFramework client = CuratorFrameworkFactory.newClient(args[0], new ExponentialBackoffRetry(200, 10));
        client.start();
        ServiceDiscovery<Map> discovery = ServiceDiscoveryBuilder.builder(Map.class)
                .client(client).basePath(args[1]).serializer(new JsonInstanceSerializer<>(Map.class)).build();
        discovery.start();
        ServiceCache<Map> cache = discovery.serviceCacheBuilder().name(args[2]).build();
        cache.addListener(new ServiceCacheListener() {
            public void cacheChanged() { print(cache); }
            public void stateChanged(CuratorFramework c, ConnectionState s) { System.out.println("# " + s); }
        });
        cache.start();
        System.out.println("# started");
        print(cache);
        while (System.in.read() != -1) { }
        cache.close();
        discovery.close();
        client.close();
    }

    @SuppressWarnings("rawtypes")
    private static synchronized void print(ServiceCache<Map> cache) {
        List<Map<String, Object>> out = new ArrayList<>();
        for (ServiceInstance<Map> i : cache.getInstances()) {
            out.add(Map.of("id", i.getId(), "address", i.getAddress(), "port", i.getPort(),
                    "enabled", i.isEnabled(), "payload", i.getPayload() == null ? Map.of() : i.getPayload()));
        }
        try {
            System.out.println(JSON.writeValueAsString(Map.of("t", System.currentTimeMillis() / 1000.0, "instances", out)));
        } catch (Exception e) {
            System.out.println("# " + e);
        }
    }
}
