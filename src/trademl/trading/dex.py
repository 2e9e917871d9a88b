"""The ``dex`` broker: market orders as swaps through a Uniswap-v2-style router on any EVM chain.

A buy of ``q`` base swaps the quote token for exactly ``q`` base (``swapTokensForExactTokens``,
paying at most the quote plus the slippage limit); a sell swaps exactly ``q`` base for at least
the quote less the limit (``swapExactTokensForTokens``). Every swap carries a deadline, so one
mined late reverts rather than filling at a stale price. Limit and stop orders do not exist on
such a venue: the live loop emulates stops and targets on closed bars, and holding the base
token is the only position (long only).

Each order is written to the order map (:mod:`trademl.trading.dex_orders`) with its signed
transaction before that is broadcast: the same client id submitted twice swaps once, and a
restarted broker finds its orders, and broadcasts what the chain never saw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from eth_account import Account
from eth_typing import HexStr
from loguru import logger
from web3 import HTTPProvider, Web3
from web3.exceptions import TransactionNotFound

from trademl.errors import ConfigError, OrderRejectedError, VenueUnavailableError
from trademl.redact import redact
from trademl.trading.broker import (
    Balance,
    Capabilities,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    Position,
)
from trademl.trading.dex_abi import ROUTER_ABI
from trademl.trading.dex_chain import (
    UNREACHABLE,
    EvmAccount,
    Token,
    check_chain_id,
    checksum,
    revert_reason,
)
from trademl.trading.dex_orders import DexOrderRow, DexOrderStore

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3.contract.contract import ContractFunction
    from web3.types import TxReceipt

    from trademl.config import Settings


@dataclass(frozen=True)
class _Swap:
    """A planned swap: what goes in, what comes out, the limits the router enforces."""

    token_in: Token
    token_out: Token
    max_in: int
    call: ContractFunction


class DexBroker:
    """Swaps on a constant-product router, through web3.py.

    Parameters
    ----------
    web3 : web3.Web3
        A client of the chain (an ``HTTPProvider`` in production, ``EthereumTesterProvider`` in
        tests).
    router : str
        The router's address.
    markets : mapping of str to (str, str)
        Symbol (``BTCUSDT``) to the addresses of its base and quote tokens.
    account : eth_account.signers.local.LocalAccount
        The account that signs; its key never leaves it.
    orders_path : pathlib.Path
        SQLite file of the client id -> transaction map.
    slippage_bps : float
        Worst fill accepted, in bps off the quote: a swap that would fill worse reverts.
    deadline_s : int
        A swap mined later than this after its quote (chain time) reverts.
    receipt_timeout_s : float
        How long :meth:`submit` waits for the receipt; after it the order is ``new`` and
        :meth:`order` follows it.
    fee_bps : float
        The pool fee (30 on Uniswap v2): each fill reports it in the quote asset and its
        price before it, as an order book does, so ``quantity · price ± fee`` is what moved.
    allow_mainnet : bool
        Trade on a known mainnet chain id (refused otherwise).
    """

    name = "dex"
    capabilities = Capabilities(stop_orders=False, oco=False, shorting=False)

    def __init__(
        self,
        web3: Web3,
        router: str,
        markets: Mapping[str, tuple[str, str]],
        account: LocalAccount,
        *,
        orders_path: Path,
        slippage_bps: float = 50.0,
        deadline_s: int = 120,
        receipt_timeout_s: float = 120.0,
        fee_bps: float = 30.0,
        allow_mainnet: bool = False,
    ) -> None:
        if not 0 <= slippage_bps < 10_000:
            raise ConfigError(f"dex slippage_bps {slippage_bps!r}: expected 0 <= bps < 10000")
        if not markets:
            raise ConfigError("dex markets: expected at least one symbol -> (base, quote) pair")
        self._web3 = web3
        self.address = str(account.address)
        self._router = web3.eth.contract(address=checksum(router, "dex router"), abi=ROUTER_ABI)
        self._markets = {
            symbol: (
                checksum(base, f"dex market {symbol} base token"),
                checksum(quote, f"dex market {symbol} quote token"),
            )
            for symbol, (base, quote) in markets.items()
        }
        self._slippage_bps = slippage_bps
        self._deadline_s = deadline_s
        self._receipt_timeout_s = receipt_timeout_s
        self._fee_bps = fee_bps
        self._store = DexOrderStore(orders_path)
        self._lock = threading.RLock()
        # The first call to the node: the settings above are checked without one.
        self._evm = EvmAccount(web3, account)
        self.chain_id = self._evm.chain_id
        check_chain_id(self.chain_id, allow_mainnet=allow_mainnet)

    @classmethod
    def from_settings(cls, settings: Settings) -> DexBroker:
        """The broker the ``dex_*`` settings describe (an HTTP JSON-RPC endpoint)."""
        missing = [
            name
            for name in ("dex_rpc_url", "dex_private_key", "dex_router")
            if getattr(settings, name) is None
        ]
        if not settings.dex_markets:
            missing.append("dex_markets")
        if missing:
            raise ConfigError(f"the dex broker needs the settings {', '.join(missing)}")
        assert settings.dex_rpc_url and settings.dex_private_key and settings.dex_router
        if not settings.dex_rpc_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"dex_rpc_url {redact(settings.dex_rpc_url)!r}: expected an http(s):// URL"
            )
        try:
            account = Account.from_key(settings.dex_private_key.get_secret_value())
        except Exception:  # the library's message may quote the key: never chain it
            raise ConfigError(
                "dex_private_key: expected a 32-byte hex private key (the value is not shown)"
            ) from None
        provider = HTTPProvider(
            settings.dex_rpc_url, request_kwargs={"timeout": settings.http_timeout_s}
        )
        return cls(
            Web3(provider),
            settings.dex_router,
            settings.dex_markets,
            account,
            orders_path=settings.dex_orders_path or settings.home / "trading" / "dex_orders.sqlite",
            slippage_bps=settings.dex_slippage_bps,
            deadline_s=settings.dex_deadline_s,
            receipt_timeout_s=settings.dex_receipt_timeout_s,
            allow_mainnet=settings.dex_allow_mainnet,
        )

    def __repr__(self) -> str:
        return f"DexBroker(chain_id={self.chain_id}, account={self.address})"

    # -- the Broker protocol -------------------------------------------------------------------

    def submit(self, request: OrderRequest) -> Order:
        """Swap for ``request`` (market orders only); a known client id returns its order.

        Raises
        ------
        OrderRejectedError
            Not a market order, an unknown symbol, a quantity below one token unit, or a swap
            the chain refused (slippage limit, deadline, balance): no tokens moved.
        VenueUnavailableError
            The node did not answer; the order may exist: ask :meth:`order` by client id.
        """
        with self._lock:
            known = self._store.get(request.client_id)
            if known is not None and known.account != self.address:
                raise OrderRejectedError(
                    f"dex order {request.client_id}: this client id belongs to another account "
                    "in the order map"
                )
            if known is not None:
                return self._to_order(self._refresh(known))
            if request.kind != "market":
                raise OrderRejectedError(
                    f"dex order {request.client_id}: kind {request.kind!r} is not supported; a "
                    "DEX swaps at market (the live loop emulates stops and targets)"
                )
            self._resume_open()
            swap = self._plan(request)
            row = DexOrderRow(
                client_id=request.client_id,
                account=self.address,
                symbol=request.symbol,
                side=request.side,
                quantity=request.quantity,
                status="new",
                created_at=pd.Timestamp.now(tz="UTC").isoformat(),
            )
            try:
                held = self._evm.balance_units(swap.token_in)
                if held < swap.max_in:
                    raise OrderRejectedError(
                        f"insufficient {swap.token_in.symbol}: holds "
                        f"{swap.token_in.amount(held)}, the swap may take "
                        f"{swap.token_in.amount(swap.max_in)}"
                    )
                self._evm.ensure_allowance(
                    swap.token_in, self._router.address, swap.max_in, self._receipt_timeout_s
                )
                signed, nonce = self._evm.sign(swap.call)
            except OrderRejectedError as error:
                # Recorded, so that this client id keeps its answer: nothing was sent.
                self._store.insert(row.updated(status="rejected", reason=str(error)))
                raise OrderRejectedError(f"dex order {request.client_id}: {error}") from None
            row = row.updated(
                tx_hash=signed.hash.to_0x_hex(), raw_tx=signed.raw_transaction.to_0x_hex()
            )
            self._store.insert(row.updated(nonce=nonce))
            row = self._broadcast(row.updated(nonce=nonce))
            logger.info(
                "dex {} {} {} {}: sent {}",
                request.client_id,
                request.side,
                request.quantity,
                request.symbol,
                row.tx_hash,
            )
            row = self._await(row, self._receipt_timeout_s)
            if row.status == "rejected":
                raise OrderRejectedError(f"dex order {request.client_id}: {row.reason}")
            return self._to_order(row)

    def cancel(self, symbol: str, client_id: str) -> Order:
        """Replace a swap still in flight by a zero-value transfer to self at its nonce (the
        chain mines one of the two); a closed order is returned as it is."""
        with self._lock:
            row = self._store.get(client_id)
            if row is None or row.symbol != symbol or row.account != self.address:
                raise OrderRejectedError(f"dex cancel: no order {client_id!r} for {symbol}")
            row = self._refresh(row)
            if row.status != "new" or row.tx_hash is None or row.nonce is None:
                return self._to_order(row)
            signed = self._evm.sign_replacement(row.tx_hash, row.nonce)
            row = row.updated(cancel_hash=signed.hash.to_0x_hex())
            self._store.update(row)
            self._evm.send(signed.raw_transaction, "send a cancel")
            return self._to_order(self._await(row, self._receipt_timeout_s))

    def order(self, symbol: str, client_id: str) -> Order | None:
        """The order with this client id (followed on chain while in flight), or None."""
        with self._lock:
            row = self._store.get(client_id)
            if row is None or row.symbol != symbol or row.account != self.address:
                return None
            return self._to_order(self._refresh(row))

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Swaps sent and not yet mined."""
        with self._lock:
            rows = [self._refresh(row) for row in self._open_rows(symbol)]
        return [self._to_order(row) for row in rows if row.status == "new"]

    def positions(self) -> list[Position]:
        """The base token held in each market, at its average cost from this broker's fills
        (at the price selling it all would fetch when no fill explains it)."""
        found = []
        for symbol, (base_address, quote_address) in self._markets.items():
            base, quote = self._evm.token(base_address), self._evm.token(quote_address)
            held = self._evm.balance_units(base)
            if held == 0:
                continue
            average = self._average_cost(symbol)
            if average is None:
                out = self._router_call("getAmountsOut", held, [base.address, quote.address])
                average = quote.amount(out[-1]) / base.amount(held)
            found.append(Position(symbol, base.amount(held), average))
        return found

    def balances(self) -> list[Balance]:
        """Non-zero balances of the markets' tokens (gas money is not counted)."""
        addresses = dict.fromkeys(a for pair in self._markets.values() for a in pair)
        found = []
        for address in addresses:
            token = self._evm.token(address)
            held = self._evm.balance_units(token)
            if held:
                found.append(Balance(token.symbol, token.amount(held)))
        return found

    def fills(self, symbol: str, since: pd.Timestamp | None = None) -> list[Fill]:
        """Mined swaps of ``symbol`` (one fill each), oldest first."""
        with self._lock:
            rows = self._store.rows(self.address, symbol=symbol, status="filled")
        found = []
        if since is not None:
            since = pd.Timestamp(since)
            since = since.tz_localize("UTC") if since.tzinfo is None else since.tz_convert("UTC")
        for row in rows:
            assert row.block_time is not None and row.average_price is not None
            mined = pd.Timestamp(row.block_time)
            if since is not None and mined < since:
                continue
            found.append(
                Fill(
                    client_id=row.client_id,
                    symbol=row.symbol,
                    side="buy" if row.side == "buy" else "sell",
                    quantity=row.filled,
                    price=row.average_price,
                    fee=row.fee,
                    time=mined,
                    fill_id=str(row.tx_hash),
                )
            )
        return sorted(found, key=lambda fill: fill.time)

    # -- chain access ----------------------------------------------------------------------------

    def _router_call(self, name: str, amount: int, path: Sequence[str]) -> list[int]:
        function = self._router.functions[name](amount, path)
        try:
            return [int(v) for v in self._evm.read(function, f"quote {name}")]
        except VenueUnavailableError:
            raise
        except Exception as error:
            reason = revert_reason(error) or redact(error)
            raise OrderRejectedError(f"dex quote refused: {reason}") from None

    def _plan(self, request: OrderRequest) -> _Swap:
        """Quote ``request`` and build its router call with the slippage limit and deadline."""
        pair = self._markets.get(request.symbol)
        if pair is None:
            raise OrderRejectedError(
                f"dex order {request.client_id}: symbol {request.symbol!r} is not a dex market "
                f"(known: {', '.join(sorted(self._markets))})"
            )
        base, quote = self._evm.token(pair[0]), self._evm.token(pair[1])
        units = base.units(request.quantity)
        if units <= 0:
            raise OrderRejectedError(
                f"dex order {request.client_id}: quantity {request.quantity!r} is below one "
                f"unit of {base.symbol} ({base.decimals} decimals)"
            )
        if units >= 2**256:
            raise OrderRejectedError(
                f"dex order {request.client_id}: quantity {request.quantity!r} is beyond what "
                "a token amount can hold (uint256)"
            )
        latest = self._evm.call(lambda: self._web3.eth.get_block("latest"), "read the latest block")
        deadline = int(latest["timestamp"]) + self._deadline_s
        slip = Decimal(repr(self._slippage_bps)) / 10_000
        functions = self._router.functions
        if request.side == "buy":
            path = [quote.address, base.address]
            quoted = self._router_call("getAmountsIn", units, path)[0]
            max_in = int((quoted * (1 + slip)).to_integral_value(ROUND_DOWN))
            call = functions.swapTokensForExactTokens(units, max_in, path, self.address, deadline)
            return _Swap(quote, base, max_in, call)
        path = [base.address, quote.address]
        quoted = self._router_call("getAmountsOut", units, path)[-1]
        min_out = int((quoted * (1 - slip)).to_integral_value(ROUND_DOWN))
        call = functions.swapExactTokensForTokens(units, min_out, path, self.address, deadline)
        return _Swap(base, quote, units, call)

    def _broadcast(self, row: DexOrderRow) -> DexOrderRow:
        """Send the row's signed bytes; a node that refuses them rejects the order."""
        assert row.raw_tx is not None
        raw = bytes.fromhex(row.raw_tx.removeprefix("0x"))
        try:
            self._evm.send(raw, "send the swap")
        except VenueUnavailableError:
            raise
        except Exception as error:
            if "known" in str(error).lower():  # sent before (a restart): the same bytes
                return row
            self._evm.next_nonce = None  # the nonce stays free: read it from the chain again
            row = row.updated(status="rejected", reason=f"the node refused it: {redact(error)}")
            self._store.update(row)
            raise OrderRejectedError(f"dex order {row.client_id}: {row.reason}") from None
        return row

    def _await(self, row: DexOrderRow, timeout_s: float) -> DexOrderRow:
        """The row settled by its receipt or its cancel's (whichever the chain mined), polled
        for up to ``timeout_s``; unchanged while both are in flight."""
        give_up = time.monotonic() + timeout_s
        pause = 0.05
        while True:
            for tx_hash, cancel in ((row.tx_hash, False), (row.cancel_hash, True)):
                if tx_hash is None:
                    continue
                try:
                    receipt = self._web3.eth.get_transaction_receipt(HexStr(tx_hash))
                except TransactionNotFound:
                    continue
                except UNREACHABLE as error:
                    message = f"dex: cannot read a receipt: {redact(error)}"
                    raise VenueUnavailableError(message) from None
                if cancel:
                    row = row.updated(status="canceled", reason="replaced by a cancel transaction")
                else:
                    row = self._settle(row, receipt)
                self._store.update(row)
                return row
            if time.monotonic() + pause > give_up:
                return row
            time.sleep(pause)
            pause = min(pause * 1.5, 1.0)

    def _settle(self, row: DexOrderRow, receipt: TxReceipt) -> DexOrderRow:
        block = self._evm.call(
            lambda: self._web3.eth.get_block(receipt["blockNumber"]), "read a block"
        )
        mined = pd.Timestamp(int(block["timestamp"]), unit="s", tz="UTC").isoformat()
        if receipt["status"] != 1:
            reason = self._evm.replay_reason(str(row.tx_hash), receipt["blockNumber"])
            logger.warning("dex {}: {} reverted: {}", row.client_id, row.tx_hash, reason)
            return row.updated(
                status="rejected", reason=f"reverted on chain: {reason}", block_time=mined
            )
        base_address, quote_address = self._markets[row.symbol]
        base, quote = self._evm.token(base_address), self._evm.token(quote_address)
        moved = self._evm.transfers(receipt)
        if row.side == "buy":
            base_units = moved.get((base.address, False), 0)
            quote_units = moved.get((quote.address, True), 0)
            fee_units = quote_units * self._fee_bps / 10_000
        else:
            base_units = moved.get((base.address, True), 0)
            quote_units = moved.get((quote.address, False), 0)
            fee_units = quote_units * self._fee_bps / (10_000 - self._fee_bps)
        # The pool keeps its fee out of the amounts swapped; the price is the one before it, so
        # that, as on an order book, quantity · price ± fee is the quote that moved.
        fee_int = int(fee_units)
        before_fee = quote_units - fee_int if row.side == "buy" else quote_units + fee_int
        filled = base.amount(base_units)
        logger.info(
            "dex {}: filled {} at block {}", row.client_id, row.tx_hash, receipt["blockNumber"]
        )
        return row.updated(
            status="filled",
            amount_in=str(quote_units if row.side == "buy" else base_units),
            amount_out=str(base_units if row.side == "buy" else quote_units),
            filled=filled,
            average_price=quote.amount(before_fee) / filled if filled else None,
            fee=quote.amount(fee_int),
            block_time=mined,
        )

    def _refresh(self, row: DexOrderRow) -> DexOrderRow:
        """Follow an order in flight: settle it from its receipt, or broadcast again the bytes
        the chain never saw, or mark it expired when its nonce went to another transaction."""
        if row.status != "new" or row.tx_hash is None or row.nonce is None:
            return row
        settled = self._await(row, 0)
        if settled.status != "new":
            return settled
        try:
            self._web3.eth.get_transaction(row.tx_hash)  # type: ignore[arg-type]
            return row
        except TransactionNotFound:
            pass
        except UNREACHABLE as error:
            raise VenueUnavailableError(
                f"dex: cannot read a transaction: {redact(error)}"
            ) from None
        used = self._evm.nonces_used()
        if int(used) > row.nonce:
            row = row.updated(
                status="expired", reason=f"dropped: nonce {row.nonce} went to another transaction"
            )
            self._store.update(row)
            return row
        return self._await(self._broadcast(row), 0)

    def _resume_open(self) -> None:
        # Orders in flight first: a signed transaction never broadcast would leave a nonce gap.
        for row in self._open_rows(None):
            self._refresh(row)

    def _open_rows(self, symbol: str | None) -> list[DexOrderRow]:
        return self._store.rows(self.address, symbol=symbol, status="new")

    def _average_cost(self, symbol: str) -> float | None:
        """Average entry price of the base held, from this broker's fills (moving average)."""
        quantity = cost = 0.0
        for fill in self.fills(symbol):
            if fill.side == "buy":
                quantity, cost = quantity + fill.quantity, cost + fill.quantity * fill.price
            elif quantity > 0:
                sold = min(fill.quantity, quantity)
                cost -= cost / quantity * sold
                quantity -= sold
        return cost / quantity if quantity > 1e-12 else None

    def _to_order(self, row: DexOrderRow) -> Order:
        request = OrderRequest(
            row.client_id,
            row.symbol,
            "buy" if row.side == "buy" else "sell",
            "market",
            row.quantity,
        )
        status: OrderStatus = row.status  # type: ignore[assignment]
        return Order(
            request,
            venue_id=row.tx_hash or row.client_id,
            status=status,
            filled=row.filled,
            average_price=row.average_price,
            reason=row.reason,
        )
