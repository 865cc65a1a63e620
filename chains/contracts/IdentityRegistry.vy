# pragma version 0.4.3
"""
@title IdentityRegistry
@notice ERC-3643-style identity registry: links investor wallets to an on-chain identity
        (an ONCHAINID contract address) and an ISO 3166-1 numeric country code.
        A wallet is verified when it has an identity; claim checks are out of scope here.
"""

event IdentityRegistered:
    investorAddress: indexed(address)
    identity: indexed(address)

event IdentityRemoved:
    investorAddress: indexed(address)
    identity: indexed(address)

event CountryUpdated:
    investorAddress: indexed(address)
    country: indexed(uint16)

event AgentAdded:
    agent: indexed(address)

event AgentRemoved:
    agent: indexed(address)

event OwnershipTransferred:
    previousOwner: indexed(address)
    newOwner: indexed(address)

MAX_BATCH: constant(uint256) = 500

owner: public(address)
isAgent: public(HashMap[address, bool])
identity: public(HashMap[address, address])
investorCountry: public(HashMap[address, uint16])


@deploy
def __init__():
    self.owner = msg.sender
    log OwnershipTransferred(previousOwner=empty(address), newOwner=msg.sender)


@internal
@view
def _only_agent():
    assert self.isAgent[msg.sender], "caller is not an agent"


@external
def transferOwnership(new_owner: address):
    assert msg.sender == self.owner, "caller is not the owner"
    assert new_owner != empty(address), "zero address"
    log OwnershipTransferred(previousOwner=self.owner, newOwner=new_owner)
    self.owner = new_owner


@external
def addAgent(agent: address):
    assert msg.sender == self.owner, "caller is not the owner"
    assert not self.isAgent[agent], "already an agent"
    self.isAgent[agent] = True
    log AgentAdded(agent=agent)


@external
def removeAgent(agent: address):
    assert msg.sender == self.owner, "caller is not the owner"
    assert self.isAgent[agent], "not an agent"
    self.isAgent[agent] = False
    log AgentRemoved(agent=agent)


@internal
def _register(user: address, onchain_id: address, country: uint16):
    assert user != empty(address), "zero address"
    assert onchain_id != empty(address), "zero identity"
    assert self.identity[user] == empty(address), "identity already registered"
    self.identity[user] = onchain_id
    self.investorCountry[user] = country
    log IdentityRegistered(investorAddress=user, identity=onchain_id)


@external
def registerIdentity(user: address, onchain_id: address, country: uint16):
    self._only_agent()
    self._register(user, onchain_id, country)


@external
def batchRegisterIdentity(
    users: DynArray[address, MAX_BATCH],
    onchain_ids: DynArray[address, MAX_BATCH],
    countries: DynArray[uint16, MAX_BATCH],
):
    self._only_agent()
    assert len(users) == len(onchain_ids) and len(users) == len(countries), "length mismatch"
    for i: uint256 in range(len(users), bound=MAX_BATCH):
        self._register(users[i], onchain_ids[i], countries[i])


@external
def deleteIdentity(user: address):
    self._only_agent()
    old: address = self.identity[user]
    assert old != empty(address), "identity not registered"
    self.identity[user] = empty(address)
    self.investorCountry[user] = 0
    log IdentityRemoved(investorAddress=user, identity=old)


@external
def updateCountry(user: address, country: uint16):
    self._only_agent()
    assert self.identity[user] != empty(address), "identity not registered"
    self.investorCountry[user] = country
    log CountryUpdated(investorAddress=user, country=country)


@external
@view
def isVerified(user: address) -> bool:
    return self.identity[user] != empty(address)


@external
@view
def contains(user: address) -> bool:
    return self.identity[user] != empty(address)
