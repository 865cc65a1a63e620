"""Errors of the agent package.

    AgentError                   anything the agent refuses or cannot do
    ├── SignerError              no usable key for a (chain, role)
    │   ├── SignerNotConfigured  no key / remote signer configured (the message names the variable)
    │   └── SignerRefused        a key production must not use (missing, placeholder, a public dev key)
    ├── RemoteSignerError        the remote signer answered with an error or an unusable signature
    ├── AgentBusy                another process holds the sender lock of this (chain, address)
    └── OperationError           retry/cancel refused (GraphQL maps `code` to extensions.code)
        ├── OperationNotFound    no operation with that id                         code OPERATION_NOT_FOUND
        └── OperationStateError  the operation's state does not allow the action   code OPERATION_STATE

Transient chain or database failures are not agent errors: the executor logs them, backs off and retries the
iteration (chains.errors.RetryableRpcError, asyncpg errors); nothing crash-loops.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of the agent's own errors."""


class SignerError(AgentError):
    pass


class SignerNotConfigured(SignerError):
    pass


class SignerRefused(SignerError):
    pass


class RemoteSignerError(AgentError):
    pass


class AgentBusy(AgentError):
    def __init__(self, chain_id: int, address: str) -> None:
        super().__init__(f"chain {chain_id}: another agent process holds the sender lock of {address}")
        self.chain_id = chain_id
        self.address = address


class OperationError(AgentError):
    code = "OPERATION_ERROR"


class OperationNotFound(OperationError):
    code = "OPERATION_NOT_FOUND"


class OperationStateError(OperationError):
    code = "OPERATION_STATE"
