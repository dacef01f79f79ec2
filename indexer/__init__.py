"""Video → frames, embeddings, perceptual hashes and transcript.

Nothing here knows about stores or servers: ``indexer`` turns one media file
into a :class:`~indexer.records.VideoRecord` and leaves persistence to
``search``.
"""
