"""Distilling the model's rationales into a compact contrastive reranker."""
