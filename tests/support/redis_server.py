"""The tests' Redis: the harness's throwaway redis-server (devtools.harness.redis_server)."""

from devtools.harness.redis_server import RedisServer, RedisUnavailable

__all__ = ["RedisServer", "RedisUnavailable"]
