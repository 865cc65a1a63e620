"""Wallet fields in the authorization matrix."""

from tests.authz import Rule

ADDRESS = "0x000000000000000000000000000000000000dEaD"

ENTRIES = {
    "Query.myWallets": Rule("{ myWallets { address } }", scopes=frozenset({"account:read"})),
    "Mutation.walletChallenge": Rule(
        f'mutation {{ walletChallenge(input: {{address: "{ADDRESS}"}}) {{ challenge {{ nonce }} errors {{ code }} }} }}'
    ),
    "Mutation.linkWallet": Rule(
        f'mutation {{ linkWallet(input: {{address: "{ADDRESS}", signature: "0x00"}}) '
        "{ wallet { id } errors { code } } }"
    ),
    "Mutation.unlinkWallet": Rule(
        f'mutation {{ unlinkWallet(input: {{address: "{ADDRESS}"}}) {{ ok errors {{ code }} }} }}'
    ),
}
