"""The slices of the ERC-20 and Uniswap-v2 router ABIs the DEX broker calls, and the chain ids
it treats as mainnets.

Written out by hand (not compiled from ``contracts/``) so that the broker needs no compiler and
speaks to any router with the Uniswap-v2 signatures, the one in ``contracts/router.vy`` included.
"""

from __future__ import annotations

from typing import Any

from web3 import Web3

# Chains where tokens carry real value: trading there needs dex_allow_mainnet.
MAINNET_CHAIN_IDS: frozenset[int] = frozenset(
    {
        1,  # Ethereum
        10,  # OP Mainnet
        56,  # BNB Smart Chain
        100,  # Gnosis
        137,  # Polygon PoS
        250,  # Fantom Opera
        324,  # zkSync Era
        8453,  # Base
        42161,  # Arbitrum One
        43114,  # Avalanche C-Chain
        59144,  # Linea
    }
)

TRANSFER_TOPIC: bytes = bytes(Web3.keccak(text="Transfer(address,address,uint256)"))


def _function(
    name: str,
    inputs: list[tuple[str, str]],
    outputs: list[str],
    mutability: str = "nonpayable",
) -> dict[str, Any]:
    return {
        "type": "function",
        "name": name,
        "stateMutability": mutability,
        "inputs": [{"name": n, "type": t} for n, t in inputs],
        "outputs": [{"name": "", "type": t} for t in outputs],
    }


ERC20_ABI: list[dict[str, Any]] = [
    _function("decimals", [], ["uint8"], "view"),
    _function("symbol", [], ["string"], "view"),
    _function("balanceOf", [("owner", "address")], ["uint256"], "view"),
    _function("allowance", [("owner", "address"), ("spender", "address")], ["uint256"], "view"),
    _function("approve", [("spender", "address"), ("amount", "uint256")], ["bool"]),
]

_PATH = [("amount", "uint256"), ("path", "address[]")]
_SWAP = [("path", "address[]"), ("to", "address"), ("deadline", "uint256")]

ROUTER_ABI: list[dict[str, Any]] = [
    _function("getAmountsOut", _PATH, ["uint256[]"], "view"),
    _function("getAmountsIn", _PATH, ["uint256[]"], "view"),
    _function(
        "swapExactTokensForTokens",
        [("amountIn", "uint256"), ("amountOutMin", "uint256"), *_SWAP],
        ["uint256[]"],
    ),
    _function(
        "swapTokensForExactTokens",
        [("amountOut", "uint256"), ("amountInMax", "uint256"), *_SWAP],
        ["uint256[]"],
    ),
]
