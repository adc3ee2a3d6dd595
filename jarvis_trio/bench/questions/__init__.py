"""The standard benchmark questions, one ``bench_*`` module per concern.

``swim_scale``, ``transport_node`` and ``transport_peer`` are helper programs the questions
start as separate processes (``python -m jarvis_trio.bench.questions.<name>``).
"""
