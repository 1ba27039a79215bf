"""Central-difference gradient checks of a module's or a loss's ``backward``, in float64.

For a module with output y, the scalar probed is ``L = sum(y * r)`` for a fixed random ``r``,
so ``backward(r)`` must return dL/dx and accumulate dL/dparam. For a loss, L is the loss itself
and ``backward()`` must return dL/dinput. Every input element and every parameter element is
perturbed by +-eps; random streams inside the module (Dropout) are replayed identically for
every evaluation. A NaN or inf in the output or in either gradient fails the check.
"""

from __future__ import annotations

import copy

import numpy as np

from . import _validate
from .nn.loss import _Loss
from .nn.module import Module


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree (or one of them, or the output, is not finite)."""


def _index(flat_index, shape) -> list[int]:
    return [int(j) for j in np.unravel_index(flat_index, shape)]


def _nonfinite(what, a, shape):
    """'what[index] is value' for the first NaN or inf of a (its index read in `shape`), or None:
    NaN passes every ``err > tol`` test, so it must fail explicitly."""
    bad = ~np.isfinite(a.reshape(-1))
    if not bad.any():
        return None
    i = int(bad.argmax())
    where = _index(i, shape) if shape else ""
    return f"{what}{where} is {a.reshape(-1)[i]} (not finite)"


def _generators(module):
    for m in module.modules():
        for v in vars(m).values():
            if isinstance(v, np.random.Generator):
                yield v


def gradcheck(
    module_or_loss,
    x,
    target=None,
    *,
    eps=1e-6,
    atol=1e-5,
    rtol=1e-3,
    check_params=True,
    seed=0,
    raise_exception=True,
):
    """Compare ``backward`` against central differences of ``forward``, for inputs and params.

    Parameters
    ----------
    module_or_loss : Module or loss
        Not modified: a float64 copy is checked.
    x : array
        The input (converted to float64).
    target : array, optional
        The loss's target (required for a loss).
    eps, atol, rtol : float
        Step, and the tolerance ``|analytic - numeric| <= atol + rtol * |numeric|``.
    check_params : bool
        Also check every parameter's gradient.

    Returns
    -------
    True when all gradients agree and everything is finite; otherwise raises GradcheckError
    naming the worst element or the first NaN/inf (or returns False with
    ``raise_exception=False``).
    """
    label = f"gradcheck: {type(module_or_loss).__name__}"

    def fail(msg):
        if raise_exception:
            raise GradcheckError(msg)
        return False

    if not isinstance(module_or_loss, Module):
        raise TypeError(f"gradcheck: expected an nnfast Module or loss, got "
                        f"{type(module_or_loss).__name__}")  # fmt: skip
    # a NaN tolerance passed every gradient (err > NaN is False); eps 0 divided by zero
    eps = _validate.real(eps, "eps", "gradcheck", low=0.0, low_open=True)
    atol = _validate.real(atol, "atol", "gradcheck", low=0.0)
    rtol = _validate.real(rtol, "rtol", "gradcheck", low=0.0)
    seed = _validate.integer(seed, "seed", "gradcheck", low=0)
    is_loss = isinstance(module_or_loss, _Loss)
    if is_loss and target is None:
        raise ValueError("gradcheck: a loss needs its target")
    m = copy.deepcopy(module_or_loss)
    m.astype(np.float64)
    x = np.array(x, dtype=np.float64)
    states = [g.bit_generator.state for g in _generators(m)]

    def replay():
        for g, s in zip(_generators(m), states):
            g.bit_generator.state = s

    def objective():
        replay()
        out = m(x, target) if is_loss else m(x)
        return float(out) if is_loss else float(np.sum(out * r))

    r = None
    if not is_loss:
        replay()
        y = m(x)
        r = np.random.default_rng(seed).standard_normal(np.shape(y))
    replay()
    out = np.asarray(m(x, target) if is_loss else m(x), dtype=np.float64)
    bad = _nonfinite("the output", out, out.shape)
    if bad:
        return fail(f"{label}: {bad}")
    del out
    for p in m.parameters():
        p.grad[...] = 0
    dx = m.backward() if is_loss else m.backward(r)
    checks = [("input", x, np.asarray(dx, dtype=np.float64))]
    if check_params and not is_loss:
        for name, p in m.named_parameters():
            checks.append((name, p.data, p.grad.copy()))

    worst = None
    for name, arr, analytic in checks:
        if analytic.shape != arr.shape:
            msg = f"gradcheck: gradient of {name} has shape {analytic.shape}, expected {arr.shape}"
            raise GradcheckError(msg)
        bad = _nonfinite(f"analytic d/d{name}", analytic, arr.shape)
        if bad:
            return fail(f"{label}: {bad}")
        flat = arr.reshape(-1)  # a view: perturbations reach the module
        numeric = np.empty(flat.size)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            f_plus = objective()
            flat[i] = old - eps
            f_minus = objective()
            flat[i] = old
            numeric[i] = (f_plus - f_minus) / (2 * eps)
        bad = _nonfinite(f"numeric d/d{name}", numeric, arr.shape)
        if bad:
            return fail(f"{label}: {bad}")
        err = np.abs(analytic.reshape(-1) - numeric) - (atol + rtol * np.abs(numeric))
        if err.size and err.max() > 0:
            i = int(err.argmax())
            if worst is None or err[i] > worst[0]:
                worst = (err[i], name, _index(i, arr.shape), analytic.reshape(-1)[i], numeric[i])
    if worst is None:
        return True
    _, name, idx, a, n = worst
    return fail(f"{label}: d/d{name}{idx} analytic {a:.8g} vs numeric {n:.8g}")
