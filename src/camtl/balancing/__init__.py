"""Loss balancers (registered by name): equal, fixed, uncertainty, group_dro, lookahead_dro,
famo, pcgrad, score_dro."""

from camtl.balancing import famo, lookahead_dro, methods, pcgrad, score_dro  # noqa: F401  (register the built-in ones)
from camtl.balancing.base import (
    BalanceContext,
    LossBalancer,
    Need,
    balancer_names,
    build_balancer,
    register_balancer,
)

__all__ = [
    "BalanceContext",
    "LossBalancer",
    "Need",
    "balancer_names",
    "build_balancer",
    "register_balancer",
]
