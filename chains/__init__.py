"""Chain specs, the RPC client, contract ABIs and deployment helpers."""

import core  # noqa: F401  (first: it keeps the recursion limit that eth-account's py_ecc raises, core/recursion_limit.py)
