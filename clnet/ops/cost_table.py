"""The one table of costs: each a record of everything clnet's checks, target reading and kernel
choice need to know of it (clnet.ops.costs launches the kernels; kernels/costs.cl holds them).
A new cost is one entry here and its value's term in costs.cl.

    quadratic      C = sum((a - y)**2) / (2 * batch)              any output activation
    mse            C = sum((a - y)**2) / (batch * outputs)        any (Keras' "mse", PyTorch's MSELoss())
    mae            C = sum(|a - y|) / (batch * outputs)           any (PyTorch's L1Loss(); gradient 0 at a = y)
    huber          C = sum(h(a - y)) / (batch * outputs)          any; h(d) = d**2 / 2 for |d| <= 1, |d| - 1/2
                                                                  beyond (PyTorch's HuberLoss(delta=1))
    cross_entropy  C = -sum(y ln a + (1 - y) ln(1 - a)) / batch   after a sigmoid
                   C = -sum(y ln a) / batch                       after a softmax (rows of y one-hot or
                                                                  probabilities); after a log_softmax the
                                                                  same (a = ln p: PyTorch's NLLLoss); on a
                                                                  linear output the outputs are logits z
                                                                  (CrossEntropyLoss; one output:
                                                                  BCEWithLogitsLoss)
    kl_divergence  C = sum(y (ln y - ln p)) / batch               after a softmax or log_softmax, or on
                                                                  logits (PyTorch's KLDivLoss(reduction=
                                                                  "batchmean") of log p; 0 ln 0 = 0); after
                                                                  a sigmoid each output's binary divergence

The cross-entropies and the divergence are computed from the logits z (exact for any z), and
their gradient is dC/dz, the output activation's derivative folded in.
"""

from __future__ import annotations

from dataclasses import dataclass

from .activations import ROWWISE


@dataclass(frozen=True)
class Cost:
    """One cost.

    aliases: other names users know it by. activations: the output activations it accepts (None:
    any). labels: integer targets are class labels, read as one-hot rows (else values), and
    label per position targets are allowed. from_logits: its value is computed from the logits z
    and its gradient is dC/dz (the output activation's derivative folded in). kernel: costs.cl's
    value kernel, or for a cost from logits the stem that `value_kernel` completes by the
    activation. delta: the suffix of its gradient kernels (costs.cl's DELTAS), for an elementwise
    cost. value_factor, gradient_factor: C = value_factor * sum / (batch [* outputs]), delta =
    gradient_factor * d / (batch [* outputs]); per_element: divided by the outputs too.
    """

    name: str
    kernel: str
    aliases: tuple[str, ...] = ()
    activations: tuple[str, ...] | None = None
    labels: bool = False
    from_logits: bool = False
    delta: str = ""
    value_factor: float = 1.0
    gradient_factor: float = 1.0
    per_element: bool = False

    def accepts(self, activation: str) -> bool:
        return self.activations is None or activation in self.activations

    def scales(self, rows: int, cols: int, batches: int | None = None) -> tuple[float, float]:
        """(value scale, gradient scale) for a (rows, cols) output; batches: the rows the value is
        averaged over (a mean of mini-batches) when not `rows`."""
        per = cols if self.per_element else 1
        return self.value_factor / ((batches or rows) * per), self.gradient_factor / (rows * per)

    def value_kernel(self, activation: str, cols: int) -> str:
        """costs.cl's kernel of the value: a cost from logits reads them as the softmax's of a row
        (softmax, log_softmax, a linear output of several columns) or as sigmoid's (a sigmoid, a
        linear output of one column)."""
        if not self.from_logits:
            return self.kernel
        softmax = activation in ROWWISE or (activation == "linear" and cols > 1)
        return f"{'softmax' if softmax else 'sigmoid'}_{self.kernel}_sum"

    def delta_suffix(self, activation: str) -> str:
        """The suffix of the kernels that write the gradient: for a cost from logits, p - y with p
        = exp(a) after a log_softmax, sigmoid(a) on one logit."""
        if not self.from_logits:
            return self.delta
        return {"log_softmax": "_exp", "linear": "_sigmoid"}.get(activation, "")

    def softmax_of_logits(self, activation: str, cols: int) -> bool:
        """A cost from the logits of a linear output of several columns: the gradient needs each
        row's softmax first (one work-item per row)."""
        return self.from_logits and activation == "linear" and cols > 1


LOGITS = ("sigmoid", "softmax", "log_softmax", "linear")  # linear: the outputs are logits

TABLE: dict[str, Cost] = {cost.name: cost for cost in (
    Cost("quadratic", "quadratic_sum", value_factor=0.5),
    Cost("mse", "quadratic_sum", ("mean_squared_error",), gradient_factor=2.0, per_element=True),
    Cost("mae", "absolute_sum", ("mean_absolute_error", "l1"), delta="_sign", per_element=True),
    Cost("huber", "huber_sum", ("huber_loss", "smooth_l1"), delta="_clamp", per_element=True),
    Cost("cross_entropy", "cross_entropy", ("binary_cross_entropy", "bce", "log_loss", "categorical_cross_entropy"),
         LOGITS, labels=True, from_logits=True),
    Cost("kl_divergence", "kl", ("kl", "kld", "kullback_leibler_divergence"), LOGITS, labels=True,
         from_logits=True),
)}
COSTS: tuple[str, ...] = tuple(TABLE)
ALIASES: dict[str, str] = {alias: cost.name for cost in TABLE.values() for alias in cost.aliases}


def find(name: str) -> Cost:
    """The cost named `name` or one of its aliases; ValueError naming the choices."""
    cost = TABLE.get(ALIASES.get(name, name)) if isinstance(name, str) else None
    if cost is None:
        raise ValueError(f"unknown cost {name!r}; choose one of {', '.join(COSTS)} "
                         f"(or their aliases {', '.join(ALIASES)})")
    return cost


def check(name: str, activation: str) -> Cost:
    """The cost `name` means if it accepts the output activation; ValueError otherwise."""
    cost = find(name)
    if not cost.accepts(activation):
        named = [a for a in cost.activations if a != "linear"]
        listed = f"{', '.join(named[:-1])} or {named[-1]}" if len(named) > 1 else named[0]
        logits = ", or a linear one (its outputs are then logits)" if "linear" in cost.activations else ""
        raise ValueError(f"the {cost.name} cost needs a {listed} output layer{logits}, got {activation!r}")
    return cost
