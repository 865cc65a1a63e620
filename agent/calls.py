"""Call data and revert reasons: pure functions over the committed contract ABIs (no I/O).

`encode_call(abi_name, function, args)` builds the transaction's data from an operation's stored arguments (ints
as decimal strings); `decode_revert(data, message)` turns revert data into a readable reason: Error(string)
(Vyper `assert ..., "reason"` and Solidity `require`), Panic(uint256), any custom error declared in the project's
ABIs, else the node's message.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from chains.contracts import CONTRACT_NAMES, load_artifact

ERROR_STRING = "08c379a0"
PANIC = "4e487b71"


def _type_str(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_type_str(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return param["type"]


@cache
def function_types(abi_name: str, function: str, arity: int) -> tuple[bytes, tuple[str, ...]]:
    """(4-byte selector, input types) of `function` with `arity` inputs in artifact `abi_name`."""
    for entry in load_artifact(abi_name)["abi"]:
        if entry.get("type") == "function" and entry.get("name") == function and len(entry["inputs"]) == arity:
            types = tuple(_type_str(p) for p in entry["inputs"])
            return function_signature_to_4byte_selector(f"{function}({','.join(types)})"), types
    raise ValueError(f"{abi_name} has no function {function} with {arity} argument(s)")


def _coerce(typ: str, value: Any) -> Any:
    if typ.endswith("]"):
        base = typ[: typ.rindex("[")]
        return [_coerce(base, v) for v in value]
    if typ.startswith(("uint", "int")):
        return int(value)
    if typ == "address":
        # 20 raw bytes: eth_abi takes them as they are (a checksum here cost ~0.7 ms per address under load)
        if isinstance(value, str) and len(value) == 42 and value[:2] in ("0x", "0X"):
            return bytes.fromhex(value[2:])
        return to_checksum_address(value)
    if typ == "bool":
        if isinstance(value, str):
            return value.lower() == "true"
        return bool(value)
    if typ.startswith("bytes"):
        return bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    return value


_ELEMENTARY = re.compile(r"(address|bool|u?int(\d*)|bytes(\d+))")


def _static_word(typ: str, value: Any) -> bytes:
    """One 32-byte ABI word of an elementary static type, with eth_abi's range checks (ValueError otherwise)."""
    if typ == "address":
        if isinstance(value, str) and len(value) == 42 and value[:2] in ("0x", "0X"):
            value = bytes.fromhex(value[2:])
        if not isinstance(value, bytes) or len(value) != 20:
            raise ValueError(f"not a 20-byte address: {value!r}")
        return bytes(12) + value
    if typ == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"not a bool: {value!r}")
        return (1 if value else 0).to_bytes(32, "big")
    if typ.startswith("uint"):
        bits = int(typ[4:] or 256)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
            raise ValueError(f"{value!r} does not fit {typ}")
        return value.to_bytes(32, "big")
    if typ.startswith("int"):
        bits = int(typ[3:] or 256)
        if isinstance(value, bool) or not isinstance(value, int) or not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            raise ValueError(f"{value!r} does not fit {typ}")
        return value.to_bytes(32, "big", signed=True)
    size = int(typ[5:])  # bytesN
    if not isinstance(value, bytes) or len(value) > size:
        raise ValueError(f"{value!r} does not fit {typ}")
    return value.ljust(32, b"\0")


def _fast_types(types: tuple[str, ...]) -> bool:
    """Elementary static types and one-dimensional dynamic arrays of them: what the fast encoder handles."""
    for t in types:
        base = t[:-2] if t.endswith("[]") else t
        m = _ELEMENTARY.fullmatch(base)
        if m is None or "[" in base or (m.group(3) and not 1 <= int(m.group(3)) <= 32):
            return False
    return True


def _encode_fast(types: tuple[str, ...], values: list[Any]) -> bytes:
    """ABI encoding (head words, then each array's length and elements) of what _fast_types accepts: eth_abi's
    generic codec cost ~11 ms for a 200-wallet batchMint on an idle machine (36 ms under load), most of the CPU of
    signing a burst of them; this is the same bytes (tests compare) in a fraction of it."""
    head: list[bytes] = []
    tail: list[bytes] = []
    offset = 32 * len(types)
    for t, v in zip(types, values):
        if t.endswith("[]"):
            base = t[:-2]
            if not isinstance(v, (list, tuple)):
                raise ValueError(f"not a list for {t}: {v!r}")
            part = len(v).to_bytes(32, "big") + b"".join(_static_word(base, x) for x in v)
            head.append(offset.to_bytes(32, "big"))
            tail.append(part)
            offset += len(part)
        else:
            head.append(_static_word(t, v))
    return b"".join(head) + b"".join(tail)


def encode_call(abi_name: str, function: str, args: list[Any]) -> str:
    """0x-hex call data; "0x" for a plain value transfer (empty function). ValueError on a bad argument."""
    if not function:
        return "0x"
    selector, types = function_types(abi_name, function, len(args))
    try:
        values = [_coerce(t, a) for t, a in zip(types, args)]
        if _fast_types(types):
            return "0x" + (selector + _encode_fast(types, values)).hex()
        return "0x" + (selector + encode(list(types), values)).hex()
    except Exception as exc:  # noqa: BLE001  (eth_abi raises several types)
        raise ValueError(f"cannot encode {function}({', '.join(types)}) with {args!r}: {exc}") from exc


@lru_cache(maxsize=1)
def _custom_errors() -> dict[str, tuple[str, tuple[str, ...]]]:
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name in CONTRACT_NAMES:
        for entry in load_artifact(name)["abi"]:
            if entry.get("type") == "error":
                types = tuple(_type_str(p) for p in entry["inputs"])
                sel = function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})").hex()
                out[sel] = (entry["name"], types)
    return out


_HEX = re.compile(r"0x[0-9a-fA-F]*")


def revert_data(error: Any) -> str | None:
    """The revert data carried by a JSON-RPC error's `data` (a hex string, or {"data": hex} for some nodes)."""
    data = getattr(error, "data", error)
    if isinstance(data, dict):
        data = data.get("data") or data.get("result")
    if isinstance(data, str) and _HEX.fullmatch(data):
        return data
    return None


def decode_revert(data: str | None, message: str | None = None) -> str:
    """A readable revert reason (never empty)."""
    hexdata = (data or "").removeprefix("0x").lower()
    if len(hexdata) >= 8:
        sel, body = hexdata[:8], bytes.fromhex(hexdata[8:])
        try:
            if sel == ERROR_STRING:
                return str(decode(["string"], body)[0])
            if sel == PANIC:
                return f"Panic(0x{decode(['uint256'], body)[0]:02x})"
            custom = _custom_errors().get(sel)
            if custom is not None:
                values = decode(list(custom[1]), body)
                return f"{custom[0]}({', '.join(str(v) for v in values)})"
        except Exception:  # noqa: BLE001  (malformed data: fall back to the message)
            pass
        return f"reverted with data 0x{hexdata[:200]}"
    if message:
        text = message.removeprefix("execution reverted").lstrip(": ").strip()
        if text:
            return text
    return "reverted without a reason"


def is_revert(code: int | None, message: str) -> bool:
    """Does a JSON-RPC error mean the EVM reverted (as opposed to a node or funds problem)?"""
    m = message.lower()
    return code == 3 or "execution reverted" in m or "revert" in m or "invalid opcode" in m
