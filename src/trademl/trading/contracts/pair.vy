# pragma version ~=0.4.0
"""
@title Constant-product pair
@notice Holds two tokens and trades them so that, after the 0.3% fee is set aside, the product of
        the reserves never falls (x * y >= k). Callers send tokens in first and then call
        mint (add liquidity), or swap (take the other token out); burn returns liquidity.
"""

interface ERC20:
    def balanceOf(owner: address) -> uint256: view
    def transfer(receiver: address, amount: uint256) -> bool: nonpayable

# Burned on the first mint so that the share price can never be pushed to a point where one
# share is worth more than anyone can pay.
MINIMUM_LIQUIDITY: constant(uint256) = 1000
# The fee in thousandths of the input amount (0.3%).
FEE_PER_MILLE: constant(uint256) = 3

event Mint:
    sender: indexed(address)
    amount0: uint256
    amount1: uint256
    liquidity: uint256

event Burn:
    sender: indexed(address)
    amount0: uint256
    amount1: uint256
    receiver: indexed(address)

event Swap:
    sender: indexed(address)
    amount0In: uint256
    amount1In: uint256
    amount0Out: uint256
    amount1Out: uint256
    receiver: indexed(address)

event Sync:
    reserve0: uint256
    reserve1: uint256

token0: public(address)
token1: public(address)
reserve0: public(uint256)
reserve1: public(uint256)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])


@deploy
def __init__(token0_: address, token1_: address):
    assert token0_ != token1_, "pair: identical tokens"
    assert token0_ != empty(address) and token1_ != empty(address), "pair: zero address"
    self.token0 = token0_
    self.token1 = token1_


@external
@view
def getReserves() -> (uint256, uint256):
    return self.reserve0, self.reserve1


@internal
def _sync(balance0: uint256, balance1: uint256):
    self.reserve0 = balance0
    self.reserve1 = balance1
    log Sync(reserve0=balance0, reserve1=balance1)


@internal
@view
def _balances() -> (uint256, uint256):
    return (
        staticcall ERC20(self.token0).balanceOf(self),
        staticcall ERC20(self.token1).balanceOf(self),
    )


@external
@nonreentrant
def mint(receiver: address) -> uint256:
    balance0: uint256 = 0
    balance1: uint256 = 0
    balance0, balance1 = self._balances()
    amount0: uint256 = balance0 - self.reserve0
    amount1: uint256 = balance1 - self.reserve1
    supply: uint256 = self.totalSupply
    liquidity: uint256 = 0
    if supply == 0:
        liquidity = isqrt(amount0 * amount1)
        assert liquidity > MINIMUM_LIQUIDITY, "pair: insufficient liquidity minted"
        liquidity -= MINIMUM_LIQUIDITY
        self.balanceOf[empty(address)] = MINIMUM_LIQUIDITY
        supply = MINIMUM_LIQUIDITY
    else:
        # Shares in proportion to the smaller side: adding off the pool's ratio donates the rest.
        liquidity = min(amount0 * supply // self.reserve0, amount1 * supply // self.reserve1)
    assert liquidity > 0, "pair: insufficient liquidity minted"
    self.balanceOf[receiver] += liquidity
    self.totalSupply = supply + liquidity
    self._sync(balance0, balance1)
    log Mint(sender=msg.sender, amount0=amount0, amount1=amount1, liquidity=liquidity)
    return liquidity


@external
@nonreentrant
def burn(liquidity: uint256, receiver: address) -> (uint256, uint256):
    assert self.balanceOf[msg.sender] >= liquidity, "pair: insufficient liquidity"
    balance0: uint256 = 0
    balance1: uint256 = 0
    balance0, balance1 = self._balances()
    supply: uint256 = self.totalSupply
    amount0: uint256 = liquidity * balance0 // supply
    amount1: uint256 = liquidity * balance1 // supply
    assert amount0 > 0 and amount1 > 0, "pair: insufficient liquidity burned"
    self.balanceOf[msg.sender] -= liquidity
    self.totalSupply = supply - liquidity
    assert extcall ERC20(self.token0).transfer(receiver, amount0), "pair: transfer failed"
    assert extcall ERC20(self.token1).transfer(receiver, amount1), "pair: transfer failed"
    balance0, balance1 = self._balances()
    self._sync(balance0, balance1)
    log Burn(sender=msg.sender, amount0=amount0, amount1=amount1, receiver=receiver)
    return amount0, amount1


@external
@nonreentrant
def swap(amount0Out: uint256, amount1Out: uint256, receiver: address):
    assert amount0Out > 0 or amount1Out > 0, "pair: insufficient output amount"
    reserve0: uint256 = self.reserve0
    reserve1: uint256 = self.reserve1
    assert amount0Out < reserve0 and amount1Out < reserve1, "pair: insufficient liquidity"
    assert receiver != self.token0 and receiver != self.token1, "pair: invalid receiver"
    if amount0Out > 0:
        assert extcall ERC20(self.token0).transfer(receiver, amount0Out), "pair: transfer failed"
    if amount1Out > 0:
        assert extcall ERC20(self.token1).transfer(receiver, amount1Out), "pair: transfer failed"
    balance0: uint256 = 0
    balance1: uint256 = 0
    balance0, balance1 = self._balances()
    # What arrived beyond the reserves left after the outputs is the input.
    amount0In: uint256 = 0
    amount1In: uint256 = 0
    if balance0 > reserve0 - amount0Out:
        amount0In = balance0 - (reserve0 - amount0Out)
    if balance1 > reserve1 - amount1Out:
        amount1In = balance1 - (reserve1 - amount1Out)
    assert amount0In > 0 or amount1In > 0, "pair: insufficient input amount"
    # The invariant on balances with the fee taken off the inputs, in thousandths.
    adjusted0: uint256 = balance0 * 1000 - amount0In * FEE_PER_MILLE
    adjusted1: uint256 = balance1 * 1000 - amount1In * FEE_PER_MILLE
    assert adjusted0 * adjusted1 >= reserve0 * reserve1 * 1000 * 1000, "pair: K"
    self._sync(balance0, balance1)
    log Swap(
        sender=msg.sender,
        amount0In=amount0In,
        amount1In=amount1In,
        amount0Out=amount0Out,
        amount1Out=amount1Out,
        receiver=receiver,
    )
