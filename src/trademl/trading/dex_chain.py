"""One account on an EVM chain, as the DEX broker uses it: calls that map an unreachable node to
:class:`~trademl.errors.VenueUnavailableError`, ERC-20 reads, approvals, gas estimates, nonces,
signing, and reading what a mined transaction moved.

The account's key stays inside its ``LocalAccount``: transactions are signed here and sent as
raw bytes, so any JSON-RPC node will do and none ever holds the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from eth_typing import ChecksumAddress, HexStr
from loguru import logger
from web3 import Web3
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    TooManyRequests,
)

from trademl.errors import ConfigError, OrderRejectedError, VenueUnavailableError
from trademl.redact import redact
from trademl.trading.dex_abi import ERC20_ABI, MAINNET_CHAIN_IDS, TRANSFER_TOPIC

if TYPE_CHECKING:
    from eth_account.datastructures import SignedTransaction
    from eth_account.signers.local import LocalAccount
    from web3.contract.contract import ContractFunction
    from web3.types import TxReceipt

T = TypeVar("T")

# Errors that leave the outcome unknown: the node could not be reached or did not answer.
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    requests.RequestException,
    ProviderConnectionError,
    RequestTimedOut,
    TooManyRequests,
)
UNANSWERED: tuple[type[BaseException], ...] = (TimeExhausted, *UNREACHABLE)
# Gas limit over the node's estimate: state may move a little before the swap is mined.
_GAS_MARGIN = 1.25
# A replacement transaction must outbid the one it replaces (geth asks for +10%).
_REPLACEMENT_BUMP = 1.25


@dataclass(frozen=True)
class Token:
    """An ERC-20 token: its address, symbol and decimals."""

    address: ChecksumAddress
    symbol: str
    decimals: int

    def units(self, amount: float) -> int:
        """``amount`` in the token's smallest units, rounded down."""
        return int((Decimal(repr(amount)) * 10**self.decimals).to_integral_value(ROUND_DOWN))

    def amount(self, units: int) -> float:
        """``units`` of the token as an amount."""
        return float(units) / float(10**self.decimals)


def checksum(value: str, what: str) -> ChecksumAddress:
    """``value`` as a checksummed address, or a ConfigError naming ``what``."""
    if not Web3.is_address(value):
        raise ConfigError(f"{what} {value!r}: expected a 20-byte hex address")
    return Web3.to_checksum_address(value)


def revert_reason(error: BaseException) -> str | None:
    """The revert message when ``error`` says the EVM reverted, else None (a client error or
    an unreachable node)."""
    text = str(getattr(error, "message", None) or error)
    if isinstance(error, ContractLogicError) or "revert" in text.lower():
        return text.removeprefix("execution reverted: ").strip() or "reverted"
    return None


def check_chain_id(chain_id: int, *, allow_mainnet: bool) -> None:
    """Refuse a known mainnet unless trading there was explicitly allowed.

    >>> check_chain_id(31337, allow_mainnet=False)
    >>> check_chain_id(1, allow_mainnet=False)
    Traceback (most recent call last):
    ...
    trademl.errors.ConfigError: dex chain id 1 is a mainnet: set dex_allow_mainnet to trade there
    """
    if chain_id in MAINNET_CHAIN_IDS and not allow_mainnet:
        raise ConfigError(
            f"dex chain id {chain_id} is a mainnet: set dex_allow_mainnet to trade there"
        )


class EvmAccount:
    """``account`` on the chain ``web3`` speaks to.

    Nonces come from a local counter kept level with the chain: the next nonce is the larger of
    the node's pending count and one past the last this object signed, since a node (or the
    replica behind a load balancer) may not count a transaction it has not seen yet.
    """

    def __init__(self, web3: Web3, account: LocalAccount) -> None:
        self.web3 = web3
        self._account = account
        self.address: ChecksumAddress = account.address
        self.next_nonce: int | None = None
        self._tokens: dict[str, Token] = {}
        self.chain_id = self.call(lambda: int(web3.eth.chain_id), "read the chain id")

    def __repr__(self) -> str:
        return f"EvmAccount(chain_id={self.chain_id}, address={self.address})"

    def call(self, action: Callable[[], T], what: str) -> T:
        """``action()``, an unreachable node raised as VenueUnavailableError (redacted)."""
        try:
            return action()
        except UNREACHABLE as error:
            raise VenueUnavailableError(f"dex: cannot {what}: {redact(error)}") from None

    def read(self, function: ContractFunction, what: str) -> Any:
        """A view call from the account (some nodes refuse calls without a sender)."""
        return self.call(lambda: function.call({"from": self.address}), what)

    def token(self, address: ChecksumAddress) -> Token:
        """The token at ``address`` (read once)."""
        token = self._tokens.get(address)
        if token is None:
            contract = self.web3.eth.contract(address=address, abi=ERC20_ABI)
            symbol = self.read(contract.functions.symbol(), "read a token symbol")
            decimals = self.read(contract.functions.decimals(), "read token decimals")
            token = self._tokens[address] = Token(address, str(symbol), int(decimals))
        return token

    def balance_units(self, token: Token) -> int:
        """The account's balance of ``token``, in units."""
        contract = self.web3.eth.contract(address=token.address, abi=ERC20_ABI)
        function = contract.functions.balanceOf(self.address)
        return int(self.read(function, f"read the {token.symbol} balance"))

    def ensure_allowance(
        self, token: Token, spender: ChecksumAddress, needed: int, timeout_s: float
    ) -> None:
        """Approve ``spender`` for ``needed`` units of ``token`` when its allowance is short,
        and wait for the approval to be mined (the swap's gas estimate needs it)."""
        functions = self.web3.eth.contract(address=token.address, abi=ERC20_ABI).functions
        allowed = self.read(functions.allowance(self.address, spender), "read allowance")
        if int(allowed) >= needed:
            return
        signed, _ = self.sign(functions.approve(spender, needed))
        self.send(signed.raw_transaction, "approve")
        logger.info("dex: approving the router for {} {}", token.amount(needed), token.symbol)
        try:
            receipt = self.web3.eth.wait_for_transaction_receipt(
                signed.hash, timeout=max(timeout_s, 1.0), poll_latency=0.05
            )
        except UNANSWERED:
            raise VenueUnavailableError(
                f"dex: the approval of {token.symbol} is not mined yet; submit again later"
            ) from None
        if receipt["status"] != 1:
            raise OrderRejectedError(f"the approval of {token.symbol} reverted")

    def sign(self, call: ContractFunction) -> tuple[SignedTransaction, int]:
        """Estimate gas (a revert here is a rejection: nothing is sent), take the next nonce
        and sign; the counter moves past the nonce."""
        try:
            gas = self.call(lambda: call.estimate_gas({"from": self.address}), "estimate gas")
        except VenueUnavailableError:
            raise
        except Exception as error:
            reason = revert_reason(error) or redact(error)
            raise OrderRejectedError(f"the swap would revert: {reason}") from None
        pending = self.call(
            lambda: self.web3.eth.get_transaction_count(self.address, "pending"), "read the nonce"
        )
        nonce = max(int(pending), self.next_nonce or 0)
        params: dict[str, Any] = {
            "from": self.address,
            "nonce": nonce,
            "gas": int(gas * _GAS_MARGIN),
            "chainId": self.chain_id,
        }
        tx = self.call(lambda: call.build_transaction(params), "price gas")  # type: ignore[arg-type]
        signed = self._account.sign_transaction(tx)  # type: ignore[arg-type]
        self.next_nonce = nonce + 1
        return signed, nonce

    def sign_replacement(self, tx_hash: str, nonce: int) -> SignedTransaction:
        """A zero-value transfer to self at ``nonce``, outbidding the transaction it replaces."""
        sent = self.call(lambda: self.web3.eth.get_transaction(HexStr(tx_hash)), "read a tx")
        tip = int(sent.get("maxPriorityFeePerGas", sent.get("gasPrice", 0)))
        cap = int(sent.get("maxFeePerGas", sent.get("gasPrice", 0)))
        replacement: dict[str, Any] = {
            "to": self.address,
            "value": 0,
            "gas": 21_000,
            "nonce": nonce,
            "chainId": self.chain_id,
            "maxPriorityFeePerGas": int(tip * _REPLACEMENT_BUMP) + 1,
            "maxFeePerGas": int(cap * _REPLACEMENT_BUMP) + 1,
        }
        return self._account.sign_transaction(replacement)

    def send(self, raw: bytes, what: str) -> None:
        """Broadcast signed bytes (a node's refusal propagates as the client's error)."""
        self.call(lambda: self.web3.eth.send_raw_transaction(raw), what)

    def nonces_used(self) -> int:
        """How many transactions of the account are mined."""
        return int(
            self.call(
                lambda: self.web3.eth.get_transaction_count(self.address, "latest"),
                "read the nonce",
            )
        )

    def transfers(self, receipt: TxReceipt) -> dict[tuple[str, bool], int]:
        """Units of each token sent by (True) and to (False) the account in ``receipt``."""
        mine = bytes(12) + bytes.fromhex(self.address.removeprefix("0x"))
        moved: dict[tuple[str, bool], int] = {}
        for log in receipt["logs"]:
            topics = log["topics"]
            if len(topics) != 3 or bytes(topics[0]) != TRANSFER_TOPIC:
                continue
            token = str(Web3.to_checksum_address(log["address"]))
            value = int.from_bytes(bytes(log["data"]), "big")
            for outgoing, topic in ((True, topics[1]), (False, topics[2])):
                if bytes(topic) == mine:
                    moved[(token, outgoing)] = moved.get((token, outgoing), 0) + value
        return moved

    def replay_reason(self, tx_hash: str, block_number: int) -> str:
        """Why a mined transaction reverted: the EVM's message, replayed on that block."""
        try:
            sent = self.web3.eth.get_transaction(HexStr(tx_hash))
            self.web3.eth.call(
                {"from": self.address, "to": sent["to"], "data": sent["input"]},
                block_identifier=block_number,
            )
        except Exception as error:
            return revert_reason(error) or "the transaction reverted"
        return "the transaction reverted"
