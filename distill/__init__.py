"""Distilling the model's rationales into a compact contrastive reranker.

- :mod:`vplink.distill.rationales` — ``RationaleRecord``, the teacher's output (one JSON line per example).
- :mod:`vplink.distill.teacher` — ``annotate(queries, retriever, llm, out_path, ...)``: the teacher run (resumable).
- :mod:`vplink.distill.features` — ``FeatureCache``: frozen text embeddings cached in safetensors shards.
- :mod:`vplink.distill.student` — ``StudentScorer``: four interaction units over frozen features (< 1 M parameters).
- :mod:`vplink.distill.losses` — InfoNCE, KL to the teacher, the rationale term, unit consistency.
- :mod:`vplink.distill.train` — ``train(rationales_path, store, out_dir, ...)``: resumable training, NIL calibration.
- :mod:`vplink.distill.scorer` — ``load_scorer(path)`` → ``DistilledScorer``, the agent's ``Reranker``.
"""
