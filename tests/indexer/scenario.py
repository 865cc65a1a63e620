"""An ERC-3643 life story on one deployed stack: every event type the indexer decodes."""

from __future__ import annotations

from eth_utils import to_checksum_address

from chains.deploy import transact
from tests.indexer.conftest import Deployed

E18 = 10**18


async def run_scenario(d: Deployed) -> dict[str, str]:
    """mint, transfers, freeze address, partial freeze, pause/unpause, forced transfer, recovery,
    identity register/remove/country, stablecoin mint/transfer. Returns the named wallets."""
    token, registry, stable = d.stack.token, d.stack.registry, d.stack.stablecoin
    agent = d.agent
    alice, bob, carol, dave, erin = d.accounts[1:6]
    # ONCHAINID contract addresses: any distinct non-zero addresses will do here
    ids = {w: to_checksum_address(f"0x{0x1D000 + i:040x}") for i, w in enumerate((alice, bob, carol, dave, erin))}
    for w, country in ((alice, 250), (bob, 276), (carol, 840), (erin, 826)):
        await transact(registry.functions.registerIdentity(w, ids[w], country), agent)
    await transact(token.functions.mint(alice, 1000 * E18), agent)
    await transact(token.functions.mint(bob, 500 * E18), agent)
    await transact(token.functions.transfer(bob, 100 * E18), alice)
    await transact(token.functions.transfer(carol, 30 * E18), bob)
    await transact(token.functions.setAddressFrozen(carol, True), agent)
    await transact(token.functions.freezePartialTokens(bob, 50 * E18), agent)
    await transact(token.functions.pause(), agent)
    await transact(token.functions.unpause(), agent)
    await transact(token.functions.forcedTransfer(bob, carol, 560 * E18), agent)  # spends frozen: TokensUnfrozen
    await transact(token.functions.freezePartialTokens(alice, 200 * E18), agent)
    await transact(token.functions.setAddressFrozen(alice, True), agent)
    # alice lost her wallet: recovered to dave (registered by the token as alice's identity)
    await transact(token.functions.recoveryAddress(alice, dave, ids[alice]), agent)
    await transact(registry.functions.updateCountry(bob, 40), agent)
    await transact(registry.functions.deleteIdentity(erin), agent)
    await transact(token.functions.burn(carol, 10 * E18), agent)
    await transact(token.functions.pause(), agent)
    await transact(stable.functions.mint(agent, 1_000_000), agent)
    await transact(stable.functions.transfer(alice, 250_000), agent)
    await transact(stable.functions.transfer(bob, 100_000), alice)
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, "erin": erin}
