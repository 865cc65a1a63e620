"""Wallet fields in the authorization matrix."""

from tests.authz import Rule

ADDRESS = "0x000000000000000000000000000000000000dEaD"

ENTRIES = {
    "Query.myWallets": Rule("{ myWallets { address } }", scopes=frozenset({"account:read"})),
    "Mutation.walletChallenge": Rule(f'mutation {{ walletChallenge(address: "{ADDRESS}") {{ nonce }} }}'),
    "Mutation.linkWallet": Rule(f'mutation {{ linkWallet(address: "{ADDRESS}", signature: "0x00") {{ id }} }}'),
    "Mutation.unlinkWallet": Rule(f'mutation {{ unlinkWallet(address: "{ADDRESS}") }}'),
}
