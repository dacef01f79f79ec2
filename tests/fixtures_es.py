"""A real Elasticsearch 8.12.2 for the test session (no mocks).

Installed once into the cache outside the checkout (see ops/services/elastic.py),
started on a free loopback port the first time a test asks for it, and stopped
when the session ends. ``SLUDGE_TEST_ES_URL`` points the tests at a server that
is already running instead (it is then neither started nor stopped, and the
tests that restart the server are skipped).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["es_prefix", "es_server", "es_url"]


@dataclass
class EsServer:
    url: str
    service: object | None  # ElasticService we started, or None for an external server
    port: int | None

    def restartable(self) -> bool:
        return self.service is not None

    def stop(self) -> None:
        self.service.stop()

    def start(self) -> None:
        self.service.start(self.port)


@pytest.fixture(scope="session")
def es_server():
    external = os.environ.get("SLUDGE_TEST_ES_URL")
    if external:
        yield EsServer(external, None, None)
        return
    from ops.services.base import ServiceError, free_port
    from ops.services.elastic import ElasticService

    root = Path(tempfile.mkdtemp(prefix="sludge-es-test-"))
    root.chmod(0o755)  # the server runs as an unprivileged user when the tests run as root
    service = ElasticService(root, heap=os.environ.get("SLUDGE_ES_HEAP", "512m"), die_with_parent=True)
    port = free_port()
    try:
        st = service.start(port)
    except ServiceError as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start Elasticsearch for the tests: {e}")
    try:
        yield EsServer(st.url, service, port)
    finally:
        service.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def es_url(es_server) -> str:
    return es_server.url


@pytest.fixture
def es_prefix(es_url):
    """A fresh index prefix per test; its indices are deleted afterwards."""
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    yield prefix
    from elasticsearch import Elasticsearch

    try:
        client = Elasticsearch(es_url, request_timeout=30)
        client.indices.delete(index=f"{prefix}*", ignore_unavailable=True, allow_no_indices=True)
        client.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}*")
        for name in client.ilm.get_lifecycle():  # the lifecycle policies the test's history made
            if name.startswith(prefix):
                client.options(ignore_status=404).ilm.delete_lifecycle(name=name)
        client.close()
    except Exception:  # the server may be down in a test that stops it; the session teardown cleans up
        pass
