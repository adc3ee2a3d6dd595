"""Customer Support Swarm: four agents that route and resolve customer queries peer to peer.

The GatewayAgent classifies each query by keyword and drops it into the chosen specialist's
mailbox. Each specialist serves its own mailbox in its own task and sends its resolution back
to the gateway over the peer mesh. The TechnicalAgent needs credentials and runs the Nexus auth
flow; the EscalationAgent keeps a record of every case it takes in blob storage.

Run it:

    python examples/support_swarm.py                  # one node, embedded defaults
    python examples/support_swarm.py --nexus-dev      # + a development Nexus gateway, full flow
    REDIS_URL=redis://127.0.0.1:6379/0 python examples/support_swarm.py   # Redis mailboxes
    python examples/support_swarm.py --distributed    # four OS processes, one agent each

Or the four processes by hand (Redis mailboxes are needed across processes)::

    python examples/support_swarm.py --agent escalation --port 7961 --seeds 127.0.0.1:7960
    python examples/support_swarm.py --agent billing    --port 7962 --seeds 127.0.0.1:7960
    python examples/support_swarm.py --agent technical  --port 7963 --seeds 127.0.0.1:7960
    python examples/support_swarm.py --agent gateway    --port 7960

It prints each query with its route and resolution, then a table of the success criteria, and
exits 0 only when every criterion holds.

The example lives in ``support_swarm/``: ``agents.py`` holds the four agents (what the seed
document describes), ``harness.py`` how they are run (modes, test queries, success criteria,
the crash drill). This file only runs that directory, as ``python examples/support_swarm``
would.
"""

from __future__ import annotations

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).with_suffix("")), run_name="__main__")
