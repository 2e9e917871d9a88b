"""Trading: one Broker protocol (paper, ccxt exchanges, a DEX router), the live loop that turns
the champion's signals into orders, the trade journal and the risk limits."""
