"""A consumer of Nacos as a Python service reads it: nacos-sdk-python 3.x (gRPC, the 2.x client
protocol) subscribed to one service. Runs in its own virtualenv (devtools/cluster/registry_builds.py:
`nacos-consumer`), not in the project's: the SDK depends on sdist-only packages.

Each time the subscription pushes (and once at start, from a query) it prints one JSON line:
    {"t": <epoch seconds>, "instances": [{"ip", "port", "weight", "enabled", "healthy", "metadata"}]}
Usage: consumer.py SERVER_ADDR NAMESPACE GROUP SERVICE [USERNAME PASSWORD]   (stops at end of stdin)
"""

import asyncio
import json
import sys
import tempfile
import time

from v2.nacos import ClientConfigBuilder, NacosNamingService, SubscribeServiceParam


def emit(instances) -> None:
    rows = [
        {
            "ip": i.ip,
            "port": i.port,
            "weight": i.weight,
            "enabled": i.enabled,
            "healthy": i.healthy,
            "metadata": i.metadata,
        }
        for i in instances
    ]
    print(json.dumps({"t": time.time(), "instances": rows}), flush=True)


async def main(args) -> None:
    server, namespace, group, service = args[:4]
    work = tempfile.mkdtemp(prefix="nacos-consumer-")
    builder = ClientConfigBuilder().server_address(server).namespace_id(namespace).log_dir(work).cache_dir(work)
    builder = builder.log_level("WARNING")
    if len(args) >= 6:
        builder = builder.username(args[4]).password(args[5])
    naming = await NacosNamingService.create_naming_service(builder.build())

    async def pushed(instances) -> None:
        emit(instances)

    await naming.subscribe(SubscribeServiceParam(service_name=service, group_name=group, subscribe_callback=pushed))
    print("# started", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await naming.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
