"""Stores: the exemplar bank (real time) and the frame history (recall).

Each store has an embedded backend (faiss + SQLite) and, in later work, a
server backend. Every score that leaves a backend is a cosine similarity in
[-1, 1] of L2-normalised embeddings (see :mod:`search.scores`).
"""
