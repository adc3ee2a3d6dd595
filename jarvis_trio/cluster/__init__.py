"""The cross-node layer: SWIM membership + the ZeroMQ data channel, wired to a node's router.

* :mod:`.runtime` -- :func:`open_cluster`, entered by a node with ``p2p_enabled``;
* :mod:`.node` -- :class:`ClusterNode`, the router's remote route and directory sync;
* :mod:`.wire` -- agent messages and directories in envelopes, directory versions;
* :mod:`.addresses` -- the advertised address and the no-key warning.
"""

from .node import ClusterNode
from .runtime import open_cluster

__all__ = ["ClusterNode", "open_cluster"]
