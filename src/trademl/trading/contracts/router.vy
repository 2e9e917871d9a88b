# pragma version ~=0.4.0
"""
@title Router over constant-product pairs
@notice Quotes and swaps along a path of tokens (one registered pair per hop) and adds
        liquidity at the pool's ratio. The external functions keep the Uniswap-v2 router's
        signatures, so a client written against this router speaks to that one as well.
"""

interface ERC20:
    def transferFrom(sender: address, receiver: address, amount: uint256) -> bool: nonpayable

interface Pair:
    def token0() -> address: view
    def token1() -> address: view
    def getReserves() -> (uint256, uint256): view
    def swap(amount0Out: uint256, amount1Out: uint256, receiver: address): nonpayable
    def mint(receiver: address) -> uint256: nonpayable

MAX_PATH: constant(uint256) = 4

event PairRegistered:
    token0: indexed(address)
    token1: indexed(address)
    pair: address

owner: public(address)
getPair: public(HashMap[address, HashMap[address, address]])


@deploy
def __init__():
    self.owner = msg.sender


@external
def registerPair(pair: address):
    assert msg.sender == self.owner, "router: only the owner registers pairs"
    token0: address = staticcall Pair(pair).token0()
    token1: address = staticcall Pair(pair).token1()
    assert self.getPair[token0][token1] == empty(address), "router: pair exists"
    self.getPair[token0][token1] = pair
    self.getPair[token1][token0] = pair
    log PairRegistered(token0=token0, token1=token1, pair=pair)


@internal
@view
def _pair(token_a: address, token_b: address) -> address:
    pair: address = self.getPair[token_a][token_b]
    assert pair != empty(address), "router: no pair for these tokens"
    return pair


@internal
@view
def _reserves(token_in: address, token_out: address) -> (uint256, uint256):
    pair: address = self._pair(token_in, token_out)
    reserve0: uint256 = 0
    reserve1: uint256 = 0
    reserve0, reserve1 = staticcall Pair(pair).getReserves()
    if token_in == staticcall Pair(pair).token0():
        return reserve0, reserve1
    return reserve1, reserve0


@internal
@pure
def _amount_out(amount_in: uint256, reserve_in: uint256, reserve_out: uint256) -> uint256:
    # out = in*0.997*R_out / (R_in + in*0.997): the largest output the pair's x*y check accepts.
    assert amount_in > 0, "router: insufficient input amount"
    assert reserve_in > 0 and reserve_out > 0, "router: insufficient liquidity"
    in_after_fee: uint256 = amount_in * 997
    return in_after_fee * reserve_out // (reserve_in * 1000 + in_after_fee)


@internal
@pure
def _amount_in(amount_out: uint256, reserve_in: uint256, reserve_out: uint256) -> uint256:
    # The smallest input whose output is at least amount_out (rounded up).
    assert amount_out > 0, "router: insufficient output amount"
    assert reserve_in > 0 and reserve_out > amount_out, "router: insufficient liquidity"
    return reserve_in * amount_out * 1000 // ((reserve_out - amount_out) * 997) + 1


@internal
@view
def _amounts_out(
    amount_in: uint256, path: DynArray[address, MAX_PATH]
) -> DynArray[uint256, MAX_PATH]:
    assert len(path) >= 2, "router: invalid path"
    amounts: DynArray[uint256, MAX_PATH] = [amount_in]
    for i: uint256 in range(MAX_PATH - 1):
        if i + 1 >= len(path):
            break
        reserve_in: uint256 = 0
        reserve_out: uint256 = 0
        reserve_in, reserve_out = self._reserves(path[i], path[i + 1])
        amounts.append(self._amount_out(amounts[i], reserve_in, reserve_out))
    return amounts


@internal
@view
def _amounts_in(
    amount_out: uint256, path: DynArray[address, MAX_PATH]
) -> DynArray[uint256, MAX_PATH]:
    assert len(path) >= 2, "router: invalid path"
    amounts: DynArray[uint256, MAX_PATH] = []
    for i: uint256 in range(MAX_PATH):
        if i >= len(path):
            break
        amounts.append(0)
    last: uint256 = len(path) - 1
    amounts[last] = amount_out
    for j: uint256 in range(MAX_PATH - 1):
        if j >= last:
            break
        hop: uint256 = last - j
        reserve_in: uint256 = 0
        reserve_out: uint256 = 0
        reserve_in, reserve_out = self._reserves(path[hop - 1], path[hop])
        amounts[hop - 1] = self._amount_in(amounts[hop], reserve_in, reserve_out)
    return amounts


@internal
def _swap(amounts: DynArray[uint256, MAX_PATH], path: DynArray[address, MAX_PATH], to: address):
    # The first pair already holds the input; each pair sends its output to the next one.
    for i: uint256 in range(MAX_PATH - 1):
        if i + 1 >= len(path):
            break
        pair: address = self._pair(path[i], path[i + 1])
        receiver: address = to
        if i + 2 < len(path):
            receiver = self._pair(path[i + 1], path[i + 2])
        amount_out: uint256 = amounts[i + 1]
        if path[i] == staticcall Pair(pair).token0():
            extcall Pair(pair).swap(0, amount_out, receiver)
        else:
            extcall Pair(pair).swap(amount_out, 0, receiver)


@external
@view
def getAmountsOut(
    amountIn: uint256, path: DynArray[address, MAX_PATH]
) -> DynArray[uint256, MAX_PATH]:
    return self._amounts_out(amountIn, path)


@external
@view
def getAmountsIn(
    amountOut: uint256, path: DynArray[address, MAX_PATH]
) -> DynArray[uint256, MAX_PATH]:
    return self._amounts_in(amountOut, path)


@external
def swapExactTokensForTokens(
    amountIn: uint256,
    amountOutMin: uint256,
    path: DynArray[address, MAX_PATH],
    to: address,
    deadline: uint256,
) -> DynArray[uint256, MAX_PATH]:
    assert block.timestamp <= deadline, "router: expired"
    amounts: DynArray[uint256, MAX_PATH] = self._amounts_out(amountIn, path)
    assert amounts[len(amounts) - 1] >= amountOutMin, "router: insufficient output amount"
    first: address = self._pair(path[0], path[1])
    assert extcall ERC20(path[0]).transferFrom(msg.sender, first, amounts[0]), "router: transfer failed"
    self._swap(amounts, path, to)
    return amounts


@external
def swapTokensForExactTokens(
    amountOut: uint256,
    amountInMax: uint256,
    path: DynArray[address, MAX_PATH],
    to: address,
    deadline: uint256,
) -> DynArray[uint256, MAX_PATH]:
    assert block.timestamp <= deadline, "router: expired"
    amounts: DynArray[uint256, MAX_PATH] = self._amounts_in(amountOut, path)
    assert amounts[0] <= amountInMax, "router: excessive input amount"
    first: address = self._pair(path[0], path[1])
    assert extcall ERC20(path[0]).transferFrom(msg.sender, first, amounts[0]), "router: transfer failed"
    self._swap(amounts, path, to)
    return amounts


@external
def addLiquidity(
    tokenA: address,
    tokenB: address,
    amountADesired: uint256,
    amountBDesired: uint256,
    amountAMin: uint256,
    amountBMin: uint256,
    to: address,
    deadline: uint256,
) -> (uint256, uint256, uint256):
    assert block.timestamp <= deadline, "router: expired"
    pair: address = self._pair(tokenA, tokenB)
    reserve_a: uint256 = 0
    reserve_b: uint256 = 0
    reserve_a, reserve_b = self._reserves(tokenA, tokenB)
    amount_a: uint256 = amountADesired
    amount_b: uint256 = amountBDesired
    if reserve_a != 0 or reserve_b != 0:
        # Deposit at the pool's ratio, as much as the desired amounts allow.
        b_optimal: uint256 = amountADesired * reserve_b // reserve_a
        if b_optimal <= amountBDesired:
            assert b_optimal >= amountBMin, "router: insufficient B amount"
            amount_b = b_optimal
        else:
            a_optimal: uint256 = amountBDesired * reserve_a // reserve_b
            assert a_optimal >= amountAMin, "router: insufficient A amount"
            amount_a = a_optimal
    assert extcall ERC20(tokenA).transferFrom(msg.sender, pair, amount_a), "router: transfer failed"
    assert extcall ERC20(tokenB).transferFrom(msg.sender, pair, amount_b), "router: transfer failed"
    liquidity: uint256 = extcall Pair(pair).mint(to)
    return amount_a, amount_b, liquidity
