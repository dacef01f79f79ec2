"""The confirm stage (Visual-Qwen) and the cascade. Built on ``indexer``."""
