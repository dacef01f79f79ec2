"""Local servers for development and tests: Redis with RediSearch, Elasticsearch.

Each service is a :class:`~ops.services.base.Service`; ``sludge services
start|stop|status NAME`` drives them. Production uses the official images
(docker-compose.yml) instead.
"""

from __future__ import annotations

import importlib

from indexer.errors import ConfigError
from ops.services.base import Service

# name -> module defining ``SERVICE``; imported only when asked for.
REGISTRY = {
    "redis": "ops.services.redis",
    "es": "ops.services.elastic",
}


def get_service(name: str) -> type[Service]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown service {name!r}; known: {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name]).SERVICE
