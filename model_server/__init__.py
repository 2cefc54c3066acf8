"""Tooling around the model server: start and stop vLLM, and prepare the models it serves.

Not part of linking: the agent only talks to a running server through its client.
"""
