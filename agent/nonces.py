"""Nonce allocation for one sender (pure). The executor is the only writer for a (chain, address) (sender lock),
so the allocation runs over what it knows: the chain's mined nonce, the node's pending nonce, and the nonces its
own live operations hold.

    next = lowest n >= mined such that n is not held by a live op and n is not in [mined, pending) unless ours

A nonce in [mined, pending) that is not ours sits in the node's pool: somebody used the key outside the platform
(detected here and skipped, never overwritten). A nonce freed by a canceled, never-broadcast op below the pending
nonce is re-used by the next op, so no gap stalls the sender.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def free_nonces(mined: int, pending: int, held: Iterable[int]) -> Iterator[int]:
    """Nonces to give new ops, lowest first (infinite)."""
    taken = {n for n in held if n >= mined}
    n = mined
    while True:
        if n not in taken and n >= pending:
            yield n
        elif n not in taken and n < pending:
            pass  # the pool holds a tx not ours at n: the key was used outside the platform
        n += 1


def foreign_nonces(mined: int, pending: int, held: Iterable[int]) -> list[int]:
    """Pending nonces in the node's pool that no live op of ours holds (for the log and the status)."""
    ours = set(held)
    return [n for n in range(mined, pending) if n not in ours]
