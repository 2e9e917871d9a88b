"""A deployed test market on eth-tester's in-process py-evm chain: the Vyper contracts of
trademl/trading/contracts compiled at test time (two ERC-20 tokens, a constant-product pair and
its router), with helpers to fund accounts and mine by hand."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import vyper
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, Web3

BTC, USDT = 10**8, 10**6  # token units per coin (8 and 6 decimals)


def compile_contracts() -> dict[str, dict[str, Any]]:
    """ABI and bytecode of the token, pair and router contracts."""
    folder = resources.files("trademl.trading") / "contracts"
    return {
        name: vyper.compile_code(
            (folder / f"{name}.vy").read_text(), output_formats=["abi", "bytecode"]
        )
        for name in ("token", "pair", "router")
    }


@dataclass
class Chain:
    """The chain, its funded admin and the deployed contracts."""

    w3: Any
    admin: str
    btc: Any
    usdt: Any
    pair: Any
    router: Any

    @property
    def tester(self) -> Any:
        return self.w3.provider.ethereum_tester

    def reserves(self) -> tuple[int, int]:
        """(BTC, USDT) reserves of the pool."""
        reserve0, reserve1 = self.pair.functions.getReserves().call()
        if self.pair.functions.token0().call() == self.btc.address:
            return reserve0, reserve1
        return reserve1, reserve0

    def holdings(self, address: str) -> tuple[int, int]:
        return (
            self.btc.functions.balanceOf(address).call(),
            self.usdt.functions.balanceOf(address).call(),
        )

    def fund(self, *, btc: int = 0, usdt: int = 0) -> LocalAccount:
        """A fresh account with 10 ETH for gas and the given token units."""
        account: LocalAccount = Account.create()
        self.w3.eth.send_transaction({"from": self.admin, "to": account.address, "value": 10**19})
        for token, units in ((self.btc, btc), (self.usdt, usdt)):
            if units:
                token.functions.mint(account.address, units).transact({"from": self.admin})
        return account

    def send_as(self, account: LocalAccount, call: Any) -> bytes:
        """Sign and send ``call`` from ``account`` (no wait: the caller mines)."""
        nonce = self.w3.eth.get_transaction_count(account.address)
        tx = call.build_transaction(
            {
                "from": account.address,
                "nonce": nonce,
                "gas": 300_000,
                "chainId": self.w3.eth.chain_id,
            }
        )
        return bytes(self.w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction))

    @contextmanager
    def manual_mining(self) -> Iterator[None]:
        """Transactions wait in the pool until the test mines a block (eth-tester's pending
        nonce ignores the pool: send one transaction per account in between)."""
        self.tester.disable_auto_mine_transactions()
        try:
            yield
        finally:
            self.tester.enable_auto_mine_transactions()
            self.tester.mine_blocks(1)

    def approved(self, token: Any, units: int, **holdings: int) -> LocalAccount:
        """A funded account that already lets the router spend ``units`` of ``token``."""
        account = self.fund(**holdings)
        self.send_as(account, token.functions.approve(self.router.address, units))
        return account

    @property
    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])


def deploy_chain(
    compiled: dict[str, dict[str, Any]], btc_units: int = 10 * BTC, usdt_units: int = 600_000 * USDT
) -> Chain:
    """A fresh chain with the contracts deployed and a pool of ``btc_units`` and
    ``usdt_units`` (60,000 USDT a BTC by default)."""
    w3 = Web3(EthereumTesterProvider())
    admin = w3.eth.accounts[0]

    def deploy(name: str, *args: Any) -> Any:
        factory = w3.eth.contract(abi=compiled[name]["abi"], bytecode=compiled[name]["bytecode"])
        receipt = w3.eth.wait_for_transaction_receipt(
            factory.constructor(*args).transact({"from": admin})
        )
        return w3.eth.contract(address=receipt["contractAddress"], abi=compiled[name]["abi"])

    btc = deploy("token", "Wrapped Bitcoin", "BTC", 8)
    usdt = deploy("token", "Tether USD", "USDT", 6)
    pair = deploy("pair", btc.address, usdt.address)
    router = deploy("router")
    router.functions.registerPair(pair.address).transact({"from": admin})
    for token, units in ((btc, btc_units * 10), (usdt, usdt_units * 10)):
        token.functions.mint(admin, units).transact({"from": admin})
        token.functions.approve(router.address, units).transact({"from": admin})
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + 600
    router.functions.addLiquidity(
        btc.address, usdt.address, btc_units, usdt_units, 0, 0, admin, deadline
    ).transact({"from": admin})
    return Chain(w3, admin, btc, usdt, pair, router)
