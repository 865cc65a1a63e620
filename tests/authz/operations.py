"""The agent's operations and the compliance actions in the authorization matrix."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"
STAFF = frozenset({"ADMIN", "COMPLIANCE"})
COMPLIANCE = frozenset({"COMPLIANCE"})
WALLET = "0x0000000000000000000000000000000000000001"


def _m(call: str, roles: frozenset[str], result: str = "operation") -> Rule:
    return Rule(f"mutation {{ {call} {{ {result} {{ id }} errors {{ code }} }} }}", roles=roles)


ENTRIES = {
    "Query.operations": Rule("{ operations(first: 1) { edges { node { id } } } }", roles=STAFF),
    "Mutation.retryOperation": _m(f'retryOperation(id: "{NOBODY}")', STAFF),
    "Mutation.cancelOperation": _m(f'cancelOperation(id: "{NOBODY}", input: {{reason: "x"}})', STAFF),
    "Mutation.freezeWallet": _m(
        f'freezeWallet(input: {{tokenId: "{NOBODY}", wallet: "{WALLET}", reason: "x"}})', COMPLIANCE
    ),
    "Mutation.unfreezeWallet": _m(
        f'unfreezeWallet(input: {{tokenId: "{NOBODY}", wallet: "{WALLET}", reason: "x"}})', COMPLIANCE
    ),
    "Mutation.freezeTokens": _m(
        f'freezeTokens(input: {{tokenId: "{NOBODY}", wallet: "{WALLET}", amount: "1", reason: "x"}})', COMPLIANCE
    ),
    "Mutation.unfreezeTokens": _m(
        f'unfreezeTokens(input: {{tokenId: "{NOBODY}", wallet: "{WALLET}", amount: "1", reason: "x"}})', COMPLIANCE
    ),
    "Mutation.pauseToken": _m(f'pauseToken(input: {{tokenId: "{NOBODY}", reason: "x"}})', COMPLIANCE),
    "Mutation.unpauseToken": _m(f'unpauseToken(input: {{tokenId: "{NOBODY}", reason: "x"}})', COMPLIANCE),
}
ENTRIES["Subscription.mySettlements"] = Rule(
    "subscription { mySettlements { tradeId } }", scopes=frozenset({"orders:read"})
)
ENTRIES["Query.myWithdrawals"] = Rule(
    "{ myWithdrawals(first: 1) { edges { node { id } } } }", scopes=frozenset({"payments:read"})
)
ENTRIES["Query.withdrawals"] = Rule("{ withdrawals(first: 1) { edges { node { id } } } }", roles=STAFF)
ENTRIES["Mutation.requestWithdrawal"] = _m(
    f'requestWithdrawal(input: {{currency: "USDC", amount: "1", wallet: "{WALLET}", idempotencyKey: "k"}})',
    frozenset({"INVESTOR", "ISSUER", "COMPLIANCE", "ADMIN"}),
    "withdrawal",
)
ENTRIES["Mutation.approveWithdrawal"] = _m(f'approveWithdrawal(id: "{NOBODY}")', frozenset({"ADMIN"}), "withdrawal")
ENTRIES["Mutation.rejectWithdrawal"] = _m(
    f'rejectWithdrawal(id: "{NOBODY}", input: {{reason: "x"}})', frozenset({"ADMIN"}), "withdrawal"
)
ENTRIES["Subscription.myWithdrawals"] = Rule(
    "subscription { myWithdrawals { id } }", scopes=frozenset({"payments:read"})
)
