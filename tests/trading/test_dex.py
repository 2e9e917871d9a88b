"""The DEX broker against a real EVM: eth-tester's in-process py-evm chain, with the Vyper
contracts of trademl/trading/contracts compiled at test time (two ERC-20 tokens, a
constant-product pair and its router)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from loguru import logger
from tests.support.evm_chain import BTC, USDT, Chain, compile_contracts, deploy_chain
from tests.support.evm_rpc import json_rpc_server
from web3 import EthereumTesterProvider, Web3

from trademl.config import Settings
from trademl.errors import ConfigError, OrderRejectedError, VenueUnavailableError
from trademl.redact import redact
from trademl.trading.broker import Broker, OrderRequest
from trademl.trading.dex import DexBroker


@pytest.fixture(scope="session")
def compiled() -> dict[str, dict[str, Any]]:
    return compile_contracts()


@pytest.fixture(scope="module")
def chain(compiled: dict[str, dict[str, Any]]) -> Chain:
    return deploy_chain(compiled)


@pytest.fixture
def make_broker(chain: Chain, tmp_path: Path) -> Callable[..., DexBroker]:
    def make(account: LocalAccount, **options: Any) -> DexBroker:
        options.setdefault("orders_path", tmp_path / "dex_orders.sqlite")
        return DexBroker(
            chain.w3,
            chain.router.address,
            {"BTCUSDT": (chain.btc.address, chain.usdt.address)},
            account,
            **options,
        )

    return make


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    logger.enable("trademl")
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    yield lines
    logger.remove(sink)
    logger.disable("trademl")


def amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    # x*y=k with 0.3% of the input kept by the pool, rounded down (the most the pair pays).
    return amount_in * 997 * reserve_out // (reserve_in * 1000 + amount_in * 997)


def amount_in(out: int, reserve_in: int, reserve_out: int) -> int:
    # The least input whose amount_out reaches ``out``.
    return reserve_in * out * 1000 // ((reserve_out - out) * 997) + 1


def test_the_broker_is_a_broker_that_swaps_at_market_only(
    chain: Chain, make_broker: Callable[..., DexBroker]
) -> None:
    broker = make_broker(chain.fund())
    assert isinstance(broker, Broker)
    assert (broker.capabilities.stop_orders, broker.capabilities.shorting) == (False, False)
    for request in (
        OrderRequest("lim", "BTCUSDT", "buy", "limit", 0.01, price=50_000.0),
        OrderRequest("stp", "BTCUSDT", "sell", "stop", 0.01, stop_price=50_000.0),
    ):
        with pytest.raises(OrderRejectedError, match=f"kind '{request.kind}' is not supported"):
            broker.submit(request)
        assert broker.order("BTCUSDT", request.client_id) is None
    with pytest.raises(OrderRejectedError, match="symbol 'ETHUSDT' is not a dex market"):
        broker.submit(OrderRequest("eth", "ETHUSDT", "buy", "market", 0.01))
    with pytest.raises(OrderRejectedError, match="below one unit of BTC"):
        broker.submit(OrderRequest("dust", "BTCUSDT", "buy", "market", 1e-9))
    with pytest.raises(OrderRejectedError, match="quantity 1e\\+80 is beyond what a token"):
        broker.submit(OrderRequest("huge", "BTCUSDT", "sell", "market", 1e80))
    assert broker.order("BTCUSDT'; DROP TABLE dex_orders; --", "dust") is None
    assert broker.open_orders("BTCUSDT") == [] and broker.fills("BTCUSDT") == []


def test_buy_and_sell_move_balances_exactly_by_the_pool_formula(
    chain: Chain, make_broker: Callable[..., DexBroker]
) -> None:
    account = chain.fund(usdt=20_000 * USDT)
    broker = make_broker(account)

    reserve_btc, reserve_usdt = chain.reserves()
    paid = amount_in(5_000_000, reserve_usdt, reserve_btc)  # 0.05 BTC
    bought = broker.submit(OrderRequest("buy-1", "BTCUSDT", "buy", "market", 0.05))
    assert bought.status == "filled" and bought.filled == pytest.approx(0.05)
    assert chain.holdings(account.address) == (5_000_000, 20_000 * USDT - paid)
    assert chain.reserves() == (reserve_btc - 5_000_000, reserve_usdt + paid)
    # The pool's 0.3% fee is reported apart from the price, as an order book's is.
    assert bought.average_price == pytest.approx((paid - paid * 30 // 10_000) / USDT / 0.05)
    assert bought.venue_id.startswith("0x") and len(bought.venue_id) == 66

    reserve_btc, reserve_usdt = chain.reserves()
    got = amount_out(2_000_000, reserve_btc, reserve_usdt)  # 0.02 BTC
    sold = broker.submit(OrderRequest("sell-1", "BTCUSDT", "sell", "market", 0.02))
    assert sold.status == "filled"
    assert chain.holdings(account.address) == (3_000_000, 20_000 * USDT - paid + got)
    assert sold.average_price == pytest.approx((got + got * 30 // 9_970) / USDT / 0.02)

    fills = broker.fills("BTCUSDT")
    assert [(f.client_id, f.side, f.quantity) for f in fills] == [
        ("buy-1", "buy", pytest.approx(0.05)),
        ("sell-1", "sell", pytest.approx(0.02)),
    ]
    assert fills[0].fee == pytest.approx(paid / USDT * 0.003, abs=1e-6)
    assert fills[0].time <= fills[1].time
    later = fills[1].time + pd.Timedelta("1s")
    assert broker.fills("BTCUSDT", since=later) == []
    assert broker.fills("BTCUSDT", since=later.tz_localize(None)) == []  # naive is UTC
    assert len(broker.fills("BTCUSDT", since=fills[1].time.tz_convert("Asia/Tokyo"))) == 1
    (position,) = broker.positions()
    assert (position.symbol, position.quantity) == ("BTCUSDT", pytest.approx(0.03))
    assert position.average_price == pytest.approx(bought.average_price)
    balances = {b.asset: b.free for b in broker.balances()}
    assert balances == {
        "BTC": pytest.approx(0.03),
        "USDT": pytest.approx((20_000 * USDT - paid + got) / USDT),
    }


def test_approval_only_when_the_allowance_is_short(
    chain: Chain, make_broker: Callable[..., DexBroker]
) -> None:
    account = chain.fund(usdt=10_000 * USDT)
    broker = make_broker(account)
    chain.send_as(account, chain.usdt.functions.approve(chain.router.address, 10_000 * USDT))
    sent = chain.w3.eth.get_transaction_count(account.address)
    broker.submit(OrderRequest("a-1", "BTCUSDT", "buy", "market", 0.01))
    assert chain.w3.eth.get_transaction_count(account.address) == sent + 1  # the swap alone

    other = chain.fund(btc=BTC)  # no allowance: approve, then swap
    make_broker(other).submit(OrderRequest("a-2", "BTCUSDT", "sell", "market", 0.5))
    assert chain.w3.eth.get_transaction_count(other.address) == 2
    assert chain.btc.functions.allowance(other.address, chain.router.address).call() == 0


def test_the_same_client_id_swaps_once_even_after_a_restart(
    chain: Chain, make_broker: Callable[..., DexBroker], tmp_path: Path
) -> None:
    account = chain.fund(usdt=10_000 * USDT)
    broker = make_broker(account, orders_path=tmp_path / "map.sqlite")
    first = broker.submit(OrderRequest("once", "BTCUSDT", "buy", "market", 0.01))
    held, nonce = (
        chain.holdings(account.address),
        chain.w3.eth.get_transaction_count(account.address),
    )
    assert broker.submit(OrderRequest("once", "BTCUSDT", "buy", "market", 0.01)) == first

    restarted = make_broker(account, orders_path=tmp_path / "map.sqlite")
    assert restarted.order("BTCUSDT", "once") == first
    assert restarted.submit(OrderRequest("once", "BTCUSDT", "buy", "market", 0.01)) == first
    assert (
        chain.holdings(account.address),
        chain.w3.eth.get_transaction_count(account.address),
    ) == (held, nonce)
    assert restarted.order("ETHUSDT", "once") is None  # another market's id space
    stranger = make_broker(chain.fund(), orders_path=tmp_path / "map.sqlite")
    assert stranger.order("BTCUSDT", "once") is None  # another account's order
    with pytest.raises(OrderRejectedError, match="once: this client id belongs to another"):
        stranger.submit(OrderRequest("once", "BTCUSDT", "buy", "market", 0.01))


def test_the_slippage_limit_reverts_a_swap_the_pool_moved_against(
    chain: Chain, make_broker: Callable[..., DexBroker]
) -> None:
    account = chain.approved(chain.usdt, 20_000 * USDT, usdt=20_000 * USDT)
    whale = chain.approved(chain.usdt, 200_000 * USDT, usdt=200_000 * USDT)
    broker = make_broker(account, slippage_bps=50, receipt_timeout_s=0)
    before = chain.holdings(account.address)
    with chain.manual_mining():
        # The whale's buy waits in the pool ahead of ours: our quote is stale when mined.
        path = [chain.usdt.address, chain.btc.address]
        chain.send_as(
            whale,
            chain.router.functions.swapExactTokensForTokens(
                100_000 * USDT, 0, path, whale.address, chain.now + 600
            ),
        )
        pending = broker.submit(OrderRequest("slip", "BTCUSDT", "buy", "market", 0.1))
        assert pending.status == "new"
        assert [o.request.client_id for o in broker.open_orders("BTCUSDT")] == ["slip"]
        chain.tester.mine_blocks(1)

        rejected = broker.order("BTCUSDT", "slip")
        assert rejected is not None and rejected.status == "rejected"
        assert "router: excessive input amount" in rejected.reason
        assert chain.holdings(account.address) == before  # gas spent, no token moved
        assert broker.open_orders() == []
        assert broker.submit(OrderRequest("slip", "BTCUSDT", "buy", "market", 0.1)) == rejected
        chain.tester.mine_blocks(1)
        assert chain.holdings(account.address) == before  # the rejected id is not sent again

        retry = broker.submit(OrderRequest("slip-2", "BTCUSDT", "buy", "market", 0.1))
        chain.tester.mine_blocks(1)
    filled = broker.order("BTCUSDT", "slip-2")
    assert retry.status == "new" and filled is not None and filled.status == "filled"
    assert chain.holdings(account.address)[0] == before[0] + 10_000_000


def test_an_expired_deadline_reverts(chain: Chain, make_broker: Callable[..., DexBroker]) -> None:
    account = chain.approved(chain.btc, BTC, btc=BTC)
    broker = make_broker(account, deadline_s=60, receipt_timeout_s=0)
    before = chain.holdings(account.address)
    with chain.manual_mining():
        assert broker.submit(OrderRequest("late", "BTCUSDT", "sell", "market", 0.1)).status == "new"
        chain.tester.time_travel(chain.now + 3600)  # mined an hour after its quote
        chain.tester.mine_blocks(1)
    late = broker.order("BTCUSDT", "late")
    assert late is not None and late.status == "rejected"
    assert "router: expired" in late.reason
    assert chain.holdings(account.address) == before


def test_a_swap_beyond_the_balance_is_rejected_before_anything_is_sent(
    chain: Chain, make_broker: Callable[..., DexBroker]
) -> None:
    account = chain.fund(btc=BTC // 10)
    broker = make_broker(account)
    sent, before = (
        chain.w3.eth.get_transaction_count(account.address),
        chain.holdings(account.address),
    )
    with pytest.raises(OrderRejectedError, match=r"dex order big: insufficient BTC: holds 0\.1,"):
        broker.submit(OrderRequest("big", "BTCUSDT", "sell", "market", 0.5))
    big = broker.order("BTCUSDT", "big")
    assert big is not None and big.status == "rejected" and "insufficient BTC" in big.reason
    assert chain.w3.eth.get_transaction_count(account.address) == sent  # no approval either
    assert chain.holdings(account.address) == before
    assert broker.submit(OrderRequest("big", "BTCUSDT", "sell", "market", 0.05)) == big
    small = broker.submit(OrderRequest("small", "BTCUSDT", "sell", "market", 0.05))
    assert small.status == "filled"


class FlakyNode(EthereumTesterProvider):  # type: ignore[misc]
    """The same chain behind a worse node: its pending nonce comes from an old block (a load
    balancer's lagging replica), and the next sends can be lost before they arrive."""

    def __init__(self, tester: Any) -> None:
        super().__init__(ethereum_tester=tester)
        self.stale_block: int | None = None
        self.lost_sends = 0

    def make_request(self, method: str, params: Any) -> Any:
        if method == "eth_getTransactionCount" and self.stale_block is not None:
            params = [params[0], self.stale_block]
        if method == "eth_sendRawTransaction" and self.lost_sends:
            self.lost_sends -= 1
            raise requests.ConnectionError("connection reset by peer")
        return super().make_request(method, params)


def test_back_to_back_orders_take_consecutive_nonces_on_a_lagging_node(
    chain: Chain, make_broker: Callable[..., DexBroker], tmp_path: Path
) -> None:
    account = chain.approved(chain.usdt, 10_000 * USDT, usdt=10_000 * USDT)
    node = FlakyNode(chain.tester)
    broker = DexBroker(
        Web3(node),
        chain.router.address,
        {"BTCUSDT": (chain.btc.address, chain.usdt.address)},
        account,
        orders_path=tmp_path / "lag.sqlite",
    )
    node.stale_block = chain.w3.eth.block_number  # the node keeps counting from here
    one = broker.submit(OrderRequest("n-1", "BTCUSDT", "buy", "market", 0.01))
    two = broker.submit(OrderRequest("n-2", "BTCUSDT", "buy", "market", 0.01))
    nonces = [chain.w3.eth.get_transaction(o.venue_id)["nonce"] for o in (one, two)]
    assert nonces[1] == nonces[0] + 1
    assert (one.status, two.status) == ("filled", "filled")
    assert chain.holdings(account.address)[0] == 2_000_000


def test_a_swap_lost_on_its_way_is_sent_again_by_a_restarted_broker(
    chain: Chain, make_broker: Callable[..., DexBroker], tmp_path: Path
) -> None:
    account = chain.approved(chain.usdt, 10_000 * USDT, usdt=10_000 * USDT)
    node = FlakyNode(chain.tester)
    markets = {"BTCUSDT": (chain.btc.address, chain.usdt.address)}
    path = tmp_path / "lost.sqlite"
    broker = DexBroker(Web3(node), chain.router.address, markets, account, orders_path=path)
    node.lost_sends = 1
    with pytest.raises(VenueUnavailableError, match="cannot send the swap"):
        broker.submit(OrderRequest("lost", "BTCUSDT", "buy", "market", 0.01))
    assert chain.holdings(account.address)[0] == 0

    restarted = make_broker(account, orders_path=path)
    found = restarted.order("BTCUSDT", "lost")  # the signed bytes, broadcast once more
    assert found is not None and found.status == "filled" and found.filled == pytest.approx(0.01)
    assert chain.holdings(account.address)[0] == 1_000_000
    assert restarted.submit(OrderRequest("lost", "BTCUSDT", "buy", "market", 0.01)) == found
    assert chain.holdings(account.address)[0] == 1_000_000


def test_cancel_replaces_a_swap_in_flight(
    chain: Chain, make_broker: Callable[..., DexBroker]
) -> None:
    account = chain.approved(chain.usdt, 10_000 * USDT, usdt=10_000 * USDT)
    broker = make_broker(account, receipt_timeout_s=0)
    before = chain.holdings(account.address)
    with chain.manual_mining():
        broker.submit(OrderRequest("c-1", "BTCUSDT", "buy", "market", 0.01))
        assert broker.cancel("BTCUSDT", "c-1").status == "new"  # the cancel is in flight too
        chain.tester.mine_blocks(1)
    canceled = broker.order("BTCUSDT", "c-1")
    assert canceled is not None and canceled.status == "canceled"
    assert chain.holdings(account.address) == before
    assert broker.cancel("BTCUSDT", "c-1") == canceled  # closed: returned as it is
    with pytest.raises(OrderRejectedError, match="no order 'nope'"):
        broker.cancel("BTCUSDT", "nope")


def test_from_settings_trades_through_an_http_json_rpc_endpoint(
    chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = chain.fund(usdt=10_000 * USDT)
    markets = {"BTCUSDT": [chain.btc.address, chain.usdt.address]}
    monkeypatch.setenv("TRADEML_DEX_MARKETS", json.dumps(markets))
    with json_rpc_server(chain.w3) as url:
        settings = Settings(
            home=tmp_path,
            dex_rpc_url=url,
            dex_private_key=account.key.hex(),
            dex_router=chain.router.address,
        )
        broker = DexBroker.from_settings(settings)
        reserve_btc, reserve_usdt = chain.reserves()
        paid = amount_in(1_000_000, reserve_usdt, reserve_btc)
        order = broker.submit(OrderRequest("http-1", "BTCUSDT", "buy", "market", 0.01))
        assert order.status == "filled"
        assert chain.holdings(account.address) == (1_000_000, 10_000 * USDT - paid)
        # The router's revert message crosses the wire as the node's error.
        with pytest.raises(OrderRejectedError, match="quote refused: router: insufficient liq"):
            broker.submit(OrderRequest("http-2", "BTCUSDT", "buy", "market", 50.0))
        assert (tmp_path / "trading" / "dex_orders.sqlite").is_file()
        assert DexBroker.from_settings(settings).order("BTCUSDT", "http-1") == order


def test_settings_build_the_broker_and_refuse_what_is_missing_or_malformed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs the settings dex_rpc_url, dex_private_key, "):
        DexBroker.from_settings(Settings(home=tmp_path))
    key = Account.create().key.hex()
    good = {
        "home": tmp_path,
        "dex_rpc_url": "http://127.0.0.1:9",
        "dex_router": "0x" + "11" * 20,
        "dex_markets": {"BTCUSDT": ("0x" + "22" * 20, "0x" + "33" * 20)},
    }
    with pytest.raises(ConfigError, match="dex_private_key: expected a 32-byte hex") as bad_key:
        DexBroker.from_settings(Settings(**good, dex_private_key="0x1234" + key[:20]))
    assert key[:20] not in str(bad_key.value)
    with pytest.raises(ConfigError, match="dex_rpc_url 'file:///etc/passwd': expected an http"):
        DexBroker.from_settings(
            Settings(**{**good, "dex_rpc_url": "file:///etc/passwd"}, dex_private_key=key)
        )
    bad_market = {**good, "dex_markets": {"BTCUSDT": ("0xnot-an-address", "0x" + "33" * 20)}}
    with pytest.raises(ConfigError, match="dex market BTCUSDT base token '0xnot-an-address'"):
        DexBroker.from_settings(Settings(**bad_market, dex_private_key=key))


def test_secrets_never_appear_in_errors_reprs_or_logs(
    chain: Chain, make_broker: Callable[..., DexBroker], tmp_path: Path, log_lines: list[str]
) -> None:
    account = chain.fund(usdt=1_000 * USDT)
    key = account.key.hex()
    messages: list[str] = []
    # An unreachable node whose URL carries a password.
    settings = Settings(
        home=tmp_path,
        dex_rpc_url="http://trader:rpc-s3cret-pw@127.0.0.1:9/rpc",
        dex_private_key=key,
        dex_router=chain.router.address,
        dex_markets={"BTCUSDT": (chain.btc.address, chain.usdt.address)},
        http_timeout_s=2,
    )
    with pytest.raises(VenueUnavailableError, match="cannot read the chain id") as unreachable:
        DexBroker.from_settings(settings)
    messages.append(str(unreachable.value))
    broker = make_broker(account)
    messages.append(repr(broker))
    broker.submit(OrderRequest("s-1", "BTCUSDT", "buy", "market", 0.001))
    with pytest.raises(OrderRejectedError) as rejected:  # more than the account holds
        broker.submit(OrderRequest("s-2", "BTCUSDT", "buy", "market", 1.0))
    messages.append(str(rejected.value))
    order = broker.order("BTCUSDT", "s-2")
    assert order is not None
    messages += [repr(order), *log_lines, redact(f"signed with {key}")]
    assert any("s-1" in line for line in log_lines)  # the broker does log its orders
    # The order map keeps signed transactions (public once sent), never the key.
    stored = (tmp_path / "dex_orders.sqlite").read_bytes()
    assert bytes.fromhex(key.removeprefix("0x")) not in stored
    assert key.removeprefix("0x").encode() not in stored
    for text in messages:
        for secret in (key, key.removeprefix("0x"), "rpc-s3cret-pw"):
            assert secret not in text
