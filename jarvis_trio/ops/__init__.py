"""Operating a node: the admin HTTP endpoint, the stats snapshot, Prometheus metrics and
OpenTelemetry traces (layer 6: it reads the node, the node never imports it statically).

* :mod:`.stats` -- :func:`~.stats.snapshot`, every counter of a node as one JSON document;
* :mod:`.admin` -- :func:`~.admin.serve_admin`, the routes ``/healthz`` ``/readyz``
  ``/members`` ``/agents`` ``/stats`` ``/metrics`` ``/events``, started by the node from its
  own nursery when ``admin_port`` is set.
"""
