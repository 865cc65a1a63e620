# pragma version 0.4.3
"""
@title A minimal EIP-1271 contract wallet (tests only)
@notice One owner key: a signature is valid when the owner signed the hash (65 bytes r, s, v).
"""

MAGIC_VALUE: constant(bytes4) = 0x1626ba7e
INVALID: constant(bytes4) = 0xffffffff

owner: public(address)


@deploy
def __init__(_owner: address):
    self.owner = _owner


@external
@view
def isValidSignature(_hash: bytes32, _signature: Bytes[65]) -> bytes4:
    if len(_signature) != 65:
        return INVALID
    r: uint256 = convert(slice(_signature, 0, 32), uint256)
    s: uint256 = convert(slice(_signature, 32, 32), uint256)
    v: uint256 = convert(slice(_signature, 64, 1), uint256)
    signer: address = ecrecover(_hash, v, r, s)
    if signer != empty(address) and signer == self.owner:
        return MAGIC_VALUE
    return INVALID
