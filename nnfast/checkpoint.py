"""Training checkpoints: model, optimizer, scheduler, random streams and progress in one ``.npz``.

    save_checkpoint(path, model, optimizer, scheduler, state={"epoch": 3, ...})
    ckpt = load_checkpoint(path, model, optimizer, scheduler)   # restores all three in place
    ckpt["state"]["epoch"]

The file is a model file of :mod:`nnfast.io` (``nnfast.io.load(path)`` and ``nnfast evaluate``
read it as a model) with extra arrays: the optimizer's state arrays as ``__optim__.<group>.<key>``
and a JSON record ``__checkpoint__`` holding the optimizer's hyper-parameters and scalar state,
the scheduler's ``state_dict``, the bit-generator state of every module that draws random numbers
while training (Dropout masks) and the caller's ``state`` (epoch, history, seed, ...). Restoring
all of it, and visiting batches in an order that depends only on (seed, epoch), resumes a run
bit-identically. Written atomically; never pickled.
"""

from __future__ import annotations

import json
import os

import numpy as np

from . import io

CHECKPOINT_KEY = "__checkpoint__"
_OPTIM_PREFIX = "__optim__."
_CALLBACK_PREFIX = "__callback__."


def _random_modules(model):
    """``{name: module}`` of the modules that own a random generator (``_rng``)."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(getattr(m, "_rng", None), np.random.Generator)
    }


def _split(state: dict, prefix: str, arrays: dict) -> dict:
    """The JSON values of ``state``; its arrays go into ``arrays`` as ``prefix + key``."""
    scalars = {}
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            arrays[prefix + k] = v
        else:
            scalars[k] = v
    return scalars


def _merge(scalars: dict, prefix: str, arrays: dict) -> dict:
    """What ``_split`` took apart, put back together."""
    return {**scalars, **{k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}}


def save_checkpoint(path, model, optimizer=None, scheduler=None, state=None, metadata=None,
                    callbacks=None):  # fmt: skip
    """Write everything needed to resume training to ``path`` (an ``.npz``), atomically.

    Parameters
    ----------
    model : Module
    optimizer : Optimizer, optional
    scheduler : LR scheduler with ``state_dict()``, optional
    state : dict, optional
        JSON-serialisable progress of the caller (epoch, batch, history, seed, configuration).
    metadata : dict, optional
        Model metadata, as for :func:`nnfast.io.save`.
    callbacks : list of Callback, optional
        Each one's ``state_dict()`` (JSON values and arrays) is kept, by position and class
        name (:func:`load_checkpoint` returns them).
    """
    for name, part, need in (("optimizer", optimizer, "param_groups"),
                             ("scheduler", scheduler, "state_dict")):  # fmt: skip
        if part is not None and not hasattr(part, need):
            raise TypeError(f"save_checkpoint: {name} must be an nnfast {name}, got "
                            f"{type(part).__name__}")  # fmt: skip
    arrays = io.model_arrays(model, metadata)
    state = {} if state is None else json.loads(io.record_json("save_checkpoint", "state", state))
    record = {"state": state, "optimizer": None, "scheduler": None}
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars = [_split(s, f"{_OPTIM_PREFIX}{i}.", arrays) for i, s in enumerate(sd["state"])]
        record["optimizer"] = {"type": sd["type"], "param_groups": sd["param_groups"],
                               "scalars": scalars}  # fmt: skip
    if scheduler is not None:
        record["scheduler"] = scheduler.state_dict()
    record["rng"] = {name: m._rng.bit_generator.state for name, m in _random_modules(model).items()}
    record["callbacks"] = []
    for i, cb in enumerate(callbacks or ()):
        sd = cb.state_dict()
        if sd is not None and not isinstance(sd, dict):
            raise TypeError(f"save_checkpoint: {type(cb).__name__}.state_dict() returned "
                            f"{type(sd).__name__}, not a dict or None")  # fmt: skip
        record["callbacks"].append(
            None if sd is None
            else {"type": type(cb).__name__, "state": _split(sd, f"{_CALLBACK_PREFIX}{i}.", arrays)}
        )  # fmt: skip
    arrays[CHECKPOINT_KEY] = np.array(json.dumps(record, default=io.jsonable))
    io.write_npz(path, arrays)


def _load_optimizer(path, record, arrays, optimizer):
    saved = record.get("optimizer")
    if saved is None:
        raise ValueError(f"load_checkpoint: {path} holds no optimizer state")
    try:
        states = [_merge(s, f"{_OPTIM_PREFIX}{i}.", arrays) for i, s in enumerate(saved["scalars"])]
        sd = {"param_groups": saved["param_groups"], "state": states}
        if "type" in saved:  # checkpoints from before it was recorded: as the optimizer's own
            sd["type"] = saved["type"]
        optimizer.load_state_dict(sd)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"load_checkpoint: {path}: the optimizer state does not load "
            f"({type(err).__name__}: {err})"
        ) from None


def _load_scheduler(path, record, scheduler):
    saved = record.get("scheduler")
    if saved is None:  # its schedule would start again from epoch 0
        raise ValueError(f"load_checkpoint: {path} holds no scheduler state")
    try:
        scheduler.load_state_dict(saved)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"load_checkpoint: {path}: the scheduler state does not load ({err})"
        ) from None


def read_checkpoint_state(path) -> dict:
    """The caller's ``state`` saved in the checkpoint at ``path``, without building the model
    (ValueError naming the file if it is not a checkpoint)."""
    path = os.fspath(path)
    record = io.open_model_file(path).json(CHECKPOINT_KEY, "load_checkpoint")
    if record is None:
        raise ValueError(f"load_checkpoint: {path} is a model file, not a training checkpoint")
    state = record.get("state")
    if not isinstance(state, dict):
        raise ValueError(f"load_checkpoint: {path}: its state is {type(state).__name__}, not a "
                         f"JSON object")  # fmt: skip
    return state


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, same_run=False) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` and restore it in place.

    Without ``model`` the model is rebuilt from the file's architecture record. The optimizer
    and scheduler, when given, must be built like the saved ones (same parameters, same
    classes); their state is replaced by the saved one. ``same_run`` (``fit``'s resume) also
    requires ``model`` to be the architecture saved (not only its shapes) and a scheduler
    exactly when one was saved.

    Returns
    -------
    dict with ``model`` (the model, restored), ``state`` (the saved progress dict),
    ``metadata`` (the model metadata), ``architecture`` (the saved model's record, as
    :func:`nnfast.io.architecture` gives), ``scheduler`` (the saved scheduler's state_dict, or
    None) and ``callbacks``: per callback saved, in order, None or ``{"type": class name,
    "state": its state_dict}``.

    Raises
    ------
    ValueError
        The file is not an nnfast checkpoint, or it does not fit the model or optimizer; the
        model, optimizer and scheduler are then left as they were.
    """
    path = os.fspath(path)
    mf = io.open_model_file(path)  # the record, sizes and headers checked; no array read yet
    meta = mf.metadata
    record = mf.json(CHECKPOINT_KEY, "load_checkpoint")
    if record is None:
        raise ValueError(f"load_checkpoint: {path} is a model file, not a training checkpoint")
    fresh = model is None
    if same_run:
        _check_same_run(path, mf.record.get("architecture"), record, model, scheduler)
    if fresh:
        model = io.load_model_file(mf)
    # the optimizer's arrays, and the model's unless load_model_file read them already
    arrays = mf.read(
        k
        for k in mf.headers
        if k.startswith((_OPTIM_PREFIX, _CALLBACK_PREFIX)) or not (fresh or k.startswith("__"))
    )
    callbacks = _callback_states(path, record, arrays)
    mods = _random_modules(model)
    lacking = sorted(set(record.get("rng", {})) - set(mods))
    if lacking:
        raise ValueError(f"load_checkpoint: {path} has random streams for {lacking}, which the "
                         f"model lacks")  # fmt: skip
    # Each part is checked as it loads, but a later part can fail after an earlier one changed:
    # the snapshots put back what was loaded, so a failed load changes nothing of the caller's.
    owned = [x for x in (None if fresh else model, optimizer, scheduler) if x is not None]
    snapshots = [(x, x.state_dict()) for x in owned]
    rngs = {name: m._rng.bit_generator.state for name, m in mods.items()}
    try:
        if not fresh:
            params = {k: v for k, v in arrays.items() if not k.startswith("__")}
            try:
                model.load_state_dict(params, strict=True)
            except ValueError as err:
                raise ValueError(f"load_checkpoint: {path}: {err}") from None
        if optimizer is not None:
            _load_optimizer(path, record, arrays, optimizer)
        if scheduler is not None:
            _load_scheduler(path, record, scheduler)
        for name, st in record.get("rng", {}).items():
            mods[name]._rng.bit_generator.state = st
    except BaseException:
        # the scheduler sets the optimizer's lr, so the optimizer is put back after it
        for x, state in reversed(snapshots):
            x.load_state_dict(state)
        for name, st in rngs.items():
            mods[name]._rng.bit_generator.state = st
        raise
    return {"model": model, "state": record.get("state", {}), "metadata": meta,
            "callbacks": callbacks, "scheduler": record.get("scheduler"),
            "architecture": mf.record.get("architecture")}  # fmt: skip


def _check_same_run(path, saved_architecture, record, model, scheduler):
    """load_checkpoint's ``same_run`` checks, before anything loads."""
    if model is not None:
        mine = json.loads(json.dumps(io.architecture(model), default=io.jsonable))
        diff = io.architecture_difference(mine, saved_architecture)
        if diff:
            raise ValueError(f"resume: {path} was saved from another model ({diff}, this "
                             f"model's against the saved one)")  # fmt: skip
    saved = record.get("scheduler")
    if scheduler is None and saved is not None:
        kind = saved.get("type", "a scheduler") if isinstance(saved, dict) else "a scheduler"
        raise ValueError(f"resume: {path} was saved with {kind}: pass it as scheduler=")


def _callback_states(path, record, arrays):
    """load_checkpoint's ``callbacks`` (none in checkpoints from before they were kept)."""
    saved = record.get("callbacks", [])
    ok = isinstance(saved, list) and all(
        s is None or (isinstance(s, dict) and isinstance(s.get("type"), str)
                      and isinstance(s.get("state"), dict))
        for s in saved
    )  # fmt: skip
    if not ok:
        raise ValueError(f"load_checkpoint: {path}: its callbacks record is malformed")
    return [
        None if s is None
        else {"type": s["type"], "state": _merge(s["state"], f"{_CALLBACK_PREFIX}{i}.", arrays)}
        for i, s in enumerate(saved)
    ]  # fmt: skip
