# pragma version 0.4.3
"""
@title SecurityToken
@notice ERC-3643-style (T-REX) permissioned ERC-20. Transfers move only between wallets verified
        by the IdentityRegistry, only while unpaused, never from or to a frozen wallet, and never
        spend frozen tokens. Agents mint, burn, freeze, force transfers and recover lost wallets.
@dev recoveryAddress registers the new wallet in the registry when it is not yet verified and
     deletes the lost one, as T-REX does: the token must be an agent of its registry for that.
"""

interface IIdentityRegistry:
    def isVerified(user: address) -> bool: view
    def identity(user: address) -> address: view
    def investorCountry(user: address) -> uint16: view
    def registerIdentity(user: address, onchain_id: address, country: uint16): nonpayable
    def deleteIdentity(user: address): nonpayable

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

event Paused:
    userAddress: address

event Unpaused:
    userAddress: address

event AddressFrozen:
    userAddress: indexed(address)
    isFrozen: indexed(bool)
    owner: indexed(address)

event TokensFrozen:
    userAddress: indexed(address)
    amount: uint256

event TokensUnfrozen:
    userAddress: indexed(address)
    amount: uint256

event RecoverySuccess:
    lostWallet: indexed(address)
    newWallet: indexed(address)
    investorOnchainID: indexed(address)

event IdentityRegistryAdded:
    identityRegistry: indexed(address)

event AgentAdded:
    agent: indexed(address)

event AgentRemoved:
    agent: indexed(address)

event OwnershipTransferred:
    previousOwner: indexed(address)
    newOwner: indexed(address)

MAX_BATCH: constant(uint256) = 500

name: public(String[64])
symbol: public(String[32])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])

owner: public(address)
isAgent: public(HashMap[address, bool])
identityRegistry: public(IIdentityRegistry)
paused: public(bool)
frozen: HashMap[address, bool]
frozenTokens: HashMap[address, uint256]


@deploy
def __init__(name_: String[64], symbol_: String[32], decimals_: uint8, registry: address):
    assert registry != empty(address), "zero registry"
    self.name = name_
    self.symbol = symbol_
    self.decimals = decimals_
    self.owner = msg.sender
    self.identityRegistry = IIdentityRegistry(registry)
    log OwnershipTransferred(previousOwner=empty(address), newOwner=msg.sender)
    log IdentityRegistryAdded(identityRegistry=registry)


# --- roles -------------------------------------------------------------------------------------

@internal
@view
def _only_owner():
    assert msg.sender == self.owner, "caller is not the owner"


@internal
@view
def _only_agent():
    assert self.isAgent[msg.sender], "caller is not an agent"


@external
def transferOwnership(new_owner: address):
    self._only_owner()
    assert new_owner != empty(address), "zero address"
    log OwnershipTransferred(previousOwner=self.owner, newOwner=new_owner)
    self.owner = new_owner


@external
def addAgent(agent: address):
    self._only_owner()
    assert not self.isAgent[agent], "already an agent"
    self.isAgent[agent] = True
    log AgentAdded(agent=agent)


@external
def removeAgent(agent: address):
    self._only_owner()
    assert self.isAgent[agent], "not an agent"
    self.isAgent[agent] = False
    log AgentRemoved(agent=agent)


@external
def setIdentityRegistry(registry: address):
    self._only_owner()
    assert registry != empty(address), "zero registry"
    self.identityRegistry = IIdentityRegistry(registry)
    log IdentityRegistryAdded(identityRegistry=registry)


# --- views -------------------------------------------------------------------------------------

@external
@view
def isFrozen(user: address) -> bool:
    return self.frozen[user]


@external
@view
def getFrozenTokens(user: address) -> uint256:
    return self.frozenTokens[user]


# --- internal movements ------------------------------------------------------------------------

@internal
def _move(sender: address, receiver: address, amount: uint256):
    # Every balance change goes through here so Transfer is always emitted.
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)


@internal
@view
def _check_sender(sender: address):
    assert not self.paused, "token is paused"
    assert not self.frozen[sender], "wallet is frozen"
    assert staticcall self.identityRegistry.isVerified(sender), "sender identity not verified"


@internal
@view
def _check_receiver(receiver: address):
    assert receiver != empty(address), "zero address"
    assert not self.frozen[receiver], "wallet is frozen"
    assert staticcall self.identityRegistry.isVerified(receiver), "identity is not verified"


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    self._check_receiver(receiver)
    assert amount <= self.balanceOf[sender] - self.frozenTokens[sender], "insufficient unfrozen balance"
    self._move(sender, receiver, amount)


@internal
def _unfreeze_for(user: address, amount: uint256):
    # Forced movements may spend frozen tokens: unfreeze just the shortfall, as T-REX does.
    free: uint256 = self.balanceOf[user] - self.frozenTokens[user]
    if amount > free:
        shortfall: uint256 = amount - free
        self.frozenTokens[user] -= shortfall
        log TokensUnfrozen(userAddress=user, amount=shortfall)


@internal
def _mint(receiver: address, amount: uint256):
    assert staticcall self.identityRegistry.isVerified(receiver), "identity is not verified"
    self.totalSupply += amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=empty(address), receiver=receiver, value=amount)


# --- ERC-20 ------------------------------------------------------------------------------------

@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._check_sender(msg.sender)
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    self._check_sender(sender)
    allowed: uint256 = self.allowance[sender][msg.sender]
    assert allowed >= amount, "insufficient allowance"
    if allowed != max_value(uint256):
        self.allowance[sender][msg.sender] = allowed - amount
    self._transfer(sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def batchTransfer(receivers: DynArray[address, MAX_BATCH], amounts: DynArray[uint256, MAX_BATCH]) -> bool:
    assert len(receivers) == len(amounts), "length mismatch"
    self._check_sender(msg.sender)
    for i: uint256 in range(len(receivers), bound=MAX_BATCH):
        self._transfer(msg.sender, receivers[i], amounts[i])
    return True


# --- agent operations --------------------------------------------------------------------------

@external
def mint(receiver: address, amount: uint256):
    self._only_agent()
    self._mint(receiver, amount)


@external
def batchMint(receivers: DynArray[address, MAX_BATCH], amounts: DynArray[uint256, MAX_BATCH]):
    self._only_agent()
    assert len(receivers) == len(amounts), "length mismatch"
    for i: uint256 in range(len(receivers), bound=MAX_BATCH):
        self._mint(receivers[i], amounts[i])


@external
def burn(user: address, amount: uint256):
    self._only_agent()
    assert self.balanceOf[user] >= amount, "burn amount exceeds balance"
    self._unfreeze_for(user, amount)
    self.balanceOf[user] -= amount
    self.totalSupply -= amount
    log Transfer(sender=user, receiver=empty(address), value=amount)


@external
def pause():
    self._only_agent()
    assert not self.paused, "already paused"
    self.paused = True
    log Paused(userAddress=msg.sender)


@external
def unpause():
    self._only_agent()
    assert self.paused, "not paused"
    self.paused = False
    log Unpaused(userAddress=msg.sender)


@internal
def _set_frozen(user: address, freeze: bool):
    self.frozen[user] = freeze
    log AddressFrozen(userAddress=user, isFrozen=freeze, owner=msg.sender)


@internal
def _freeze_tokens(user: address, amount: uint256):
    assert self.balanceOf[user] >= self.frozenTokens[user] + amount, "amount exceeds balance"
    self.frozenTokens[user] += amount
    log TokensFrozen(userAddress=user, amount=amount)


@external
def setAddressFrozen(user: address, freeze: bool):
    self._only_agent()
    self._set_frozen(user, freeze)


@external
def freezePartialTokens(user: address, amount: uint256):
    self._only_agent()
    self._freeze_tokens(user, amount)


@external
def unfreezePartialTokens(user: address, amount: uint256):
    self._only_agent()
    assert self.frozenTokens[user] >= amount, "amount exceeds frozen tokens"
    self.frozenTokens[user] -= amount
    log TokensUnfrozen(userAddress=user, amount=amount)


@external
def settlementTransfer(sender: address, receiver: address, amount: uint256) -> bool:
    # A trade's settlement, executed by an agent: the seller's tokens move under every rule of an ordinary
    # transfer (not paused, neither wallet frozen, both verified, only unfrozen tokens), so a settlement the
    # token's rules now forbid reverts instead of overriding them as forcedTransfer does.
    self._only_agent()
    self._check_sender(sender)
    self._transfer(sender, receiver, amount)
    return True


@external
def batchSettlementTransfer(
    senders: DynArray[address, MAX_BATCH],
    receivers: DynArray[address, MAX_BATCH],
    amounts: DynArray[uint256, MAX_BATCH],
) -> bool:
    # Many settlements in one transaction; one that breaks a rule reverts them all.
    self._only_agent()
    assert len(senders) == len(receivers) and len(senders) == len(amounts), "length mismatch"
    for i: uint256 in range(len(senders), bound=MAX_BATCH):
        self._check_sender(senders[i])
        self._transfer(senders[i], receivers[i], amounts[i])
    return True


@external
def forcedTransfer(sender: address, receiver: address, amount: uint256) -> bool:
    # Ignores pause and wallet freezes (regulatory override) but the receiver must be verified.
    self._only_agent()
    assert self.balanceOf[sender] >= amount, "sender balance too low"
    assert receiver != empty(address), "zero address"
    assert staticcall self.identityRegistry.isVerified(receiver), "identity is not verified"
    self._unfreeze_for(sender, amount)
    self._move(sender, receiver, amount)
    return True


@external
def recoveryAddress(lost_wallet: address, new_wallet: address, investor_onchain_id: address) -> bool:
    self._only_agent()
    assert self.balanceOf[lost_wallet] != 0, "no tokens to recover"
    assert new_wallet != empty(address) and new_wallet != lost_wallet, "bad new wallet"
    registry: IIdentityRegistry = self.identityRegistry
    assert staticcall registry.identity(lost_wallet) == investor_onchain_id, "lost wallet identity mismatch"
    if staticcall registry.isVerified(new_wallet):
        assert staticcall registry.identity(new_wallet) == investor_onchain_id, "new wallet identity mismatch"
    else:
        extcall registry.registerIdentity(new_wallet, investor_onchain_id, staticcall registry.investorCountry(lost_wallet))

    amount: uint256 = self.balanceOf[lost_wallet]
    frozen_amount: uint256 = self.frozenTokens[lost_wallet]
    was_frozen: bool = self.frozen[lost_wallet]
    self._unfreeze_for(lost_wallet, amount)
    self._move(lost_wallet, new_wallet, amount)
    if frozen_amount > 0:
        self._freeze_tokens(new_wallet, frozen_amount)
    if was_frozen:
        self._set_frozen(new_wallet, True)
        self._set_frozen(lost_wallet, False)
    extcall registry.deleteIdentity(lost_wallet)
    log RecoverySuccess(lostWallet=lost_wallet, newWallet=new_wallet, investorOnchainID=investor_onchain_id)
    return True
