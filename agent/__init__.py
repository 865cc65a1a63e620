"""The write side of the chains: a durable outbox of on-chain operations and the executor that sends them.

Domain code enqueues (`agent.outbox.enqueue`) in the decision's transaction; the executor (`rwa agent run`) signs,
stores, broadcasts, replaces and re-broadcasts, and confirms each operation from the indexer's events at finality,
calling the completion handler registered for its kind (`agent.handlers`) in the same transaction.
Imports point one way: agent -> chains + models + core (never schema/ or server/).
"""
