"""Keep the interpreter's recursion limit at its default for the whole process.

py_ecc (imported by eth-account, web3 and eth-keys, hence by `linkWallet`, deployments and the agent) runs
`sys.setrecursionlimit(100000)` on import. With that limit, deep recursion in C code (the json decoder on a nested
cursor or body, say) overflows the C stack and the process dies with SIGSEGV instead of raising RecursionError. Its
own code never recurses that deep (scalar multiplication recurses once per bit: ~256 frames).

`core/__init__.py` calls `pin()` so every process (API workers, CLI, jobs, indexer, agent) imports py_ecc once, up
front, and puts the limit back; later imports of eth-account find py_ecc in sys.modules and change nothing.
"""

from __future__ import annotations

import sys


def pin() -> int:
    """Import py_ecc now and restore the limit it raises; return the limit in force."""
    limit = sys.getrecursionlimit()
    try:
        import py_ecc  # noqa: F401  (raises the limit on import)
    except ImportError:  # not installed in this build: nothing raises the limit
        pass
    sys.setrecursionlimit(limit)
    return limit
