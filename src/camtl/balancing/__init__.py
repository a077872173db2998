"""Loss balancers (registered by name): equal, fixed, uncertainty, group_dro, lookahead_dro."""

from camtl.balancing import methods  # noqa: F401  (registers the built-in balancers)
from camtl.balancing.base import (
    BalanceContext,
    LossBalancer,
    balancer_names,
    build_balancer,
    register_balancer,
)

__all__ = [
    "BalanceContext",
    "LossBalancer",
    "balancer_names",
    "build_balancer",
    "register_balancer",
]
