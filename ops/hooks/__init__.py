"""The real-time hooks service: API keys, the job queue on Redis Streams, workers, signed webhooks.

Everything shared between the API processes and the workers lives in Redis
under one key prefix (``hooks.key_prefix``), so any number of either can run
on any number of machines; the only other shared state is the upload folder.
"""
