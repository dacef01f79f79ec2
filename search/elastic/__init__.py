"""The frame history on Elasticsearch 8.x (used when ``SLUDGE_ES_URL`` is set)."""
