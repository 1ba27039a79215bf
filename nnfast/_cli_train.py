"""``nnfast train``: default recipes, the epoch loop with a progress bar, checkpoints and resume,
Ctrl-C, metrics files and plots.

Resuming is bit-identical because everything a step depends on is either restored from the
checkpoint (weights, optimizer and scheduler state, Dropout's random streams, the running sums
of the current epoch) or a function of (seed, epoch) alone (the shuffling order, as
``DataLoader.order``). A checkpoint taken by Ctrl-C in the middle of an epoch records how many
batches of it are done; ``--resume`` skips exactly those.
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

# Default recipes, chosen on the real data (see README): each reaches its target accuracy on
# MNIST within its epochs. Options given on the command line override them.
# The convolutional recipes augment (random affine maps): without it they plateau near 99.3% on
# MNIST, and the longer schedule gives the augmented data time to pay.
RECIPES = {
    "mlp": {"hidden": [256, 128], "dropout": 0.2, "epochs": 15, "batch_size": 128,
            "optimizer": "adamw", "lr": 1e-3, "lr_schedule": "cosine", "weight_decay": 1e-4,
            "augment": "none"},
    "lenet5": {"dropout": 0.0, "epochs": 15, "batch_size": 128, "optimizer": "adamw",
               "lr": 2e-3, "lr_schedule": "cosine", "weight_decay": 1e-4, "augment": "affine"},
    "cnn": {"dropout": 0.25, "epochs": 15, "batch_size": 128, "optimizer": "adamw",
            "lr": 1e-3, "lr_schedule": "cosine", "weight_decay": 1e-4, "augment": "affine"},
}  # fmt: skip

# --augment presets: the arguments of the transform (its fill is the data set's background)
AUGMENT = {
    "none": None,
    "shift": ("RandomShift", {"max_px": 2}),
    "affine": ("RandomAffine", {"degrees": 10, "translate": (0.1, 0.1), "scale": (0.9, 1.1)}),
}

# learning rate when --optimizer differs from the recipe's and --lr is not given
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}

# options that define the run: fixed by the checkpoint when resuming
RUN_OPTIONS = ("dataset", "model", "hidden", "dropout", "batch_size", "optimizer", "lr",
               "lr_schedule", "weight_decay", "augment", "seed")  # fmt: skip

# architecture options and the models that take them (--dropout 0, none, suits every model)
MODEL_OPTIONS = {"hidden": ("mlp",), "dropout": ("mlp", "cnn")}

CHECKPOINT_NAME = "checkpoint.npz"
METRIC_FIELDS = ("epoch", "loss", "accuracy", "test_loss", "test_accuracy", "lr", "time",
                 "samples_per_s")  # fmt: skip


class TrainingInterrupted(Exception):
    """Ctrl-C stopped training after a checkpoint was written; the CLI exits with 130."""


def _option_given(args, name):
    return getattr(args, name, None) is not None


def option_not_taken(args) -> str | None:
    """A usage message if an architecture option was given that ``--model`` does not take."""
    for key, models in MODEL_OPTIONS.items():
        if args.model and getattr(args, key) and args.model not in models:
            return f"--{key} does not apply to --model {args.model} (only to {', '.join(models)})"
    return None


def check_outputs(args) -> None:
    """Raise OSError naming the option and path if an output of the run could not be written,
    so that it fails before data are loaded, not after training. The checkpoint directory is
    created with its parents, so its nearest existing ancestor (or itself) must be a writable
    directory; each output file's directory must be one too, or be among those created."""
    ckpt = Path(args.checkpoint_dir)
    chain = (ckpt, *ckpt.parents)
    created = {os.path.abspath(d) for d in chain if not d.exists()}
    outputs = [("--checkpoint-dir", args.checkpoint_dir, next(d for d in chain if d.exists()))]
    for flag, path in (("--save", args.save), ("--metrics-out", args.metrics_out),
                       ("--plot", args.plot)):  # fmt: skip
        if path:
            if os.path.isdir(path):
                raise IsADirectoryError(f"{flag} {path}: is a directory, not a file")
            directory = os.path.dirname(path) or "."
            if os.path.abspath(directory) not in created:
                outputs.append((flag, path, directory))
    for flag, path, directory in outputs:
        if not os.path.exists(directory):
            raise FileNotFoundError(f"{flag} {path}: the directory {directory} does not exist")
        if not os.path.isdir(directory):
            raise NotADirectoryError(f"{flag} {path}: {directory} is not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(f"{flag} {path}: the directory {directory} is not writable")


def resolve_config(args) -> dict:
    """The run's configuration: the model's recipe, overridden by the options given."""
    model = args.model or "mlp"
    recipe = RECIPES[model]
    cfg = {"dataset": args.dataset or "mnist", "model": model}
    for key in ("hidden", "dropout", "epochs", "batch_size", "optimizer", "lr_schedule",
                "weight_decay", "augment"):  # fmt: skip
        value = getattr(args, key)
        cfg[key] = recipe.get(key) if value is None else value
    if model != "mlp":
        cfg["hidden"] = None
    if args.lr is not None:
        cfg["lr"] = args.lr
    elif cfg["optimizer"] == recipe["optimizer"]:
        cfg["lr"] = recipe["lr"]
    else:
        cfg["lr"] = DEFAULT_LR[cfg["optimizer"]]
    cfg["seed"] = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    return cfg


def build_model(cfg):
    from .models import MODELS

    if cfg["model"] == "mlp":
        return MODELS["mlp"](hidden=tuple(cfg["hidden"]), dropout=cfg["dropout"])
    if cfg["model"] == "cnn":
        return MODELS["cnn"](dropout=cfg["dropout"])
    return MODELS[cfg["model"]]()  # --dropout was refused by option_not_taken


def build_optimizer(cfg, params):
    from . import optim

    name, lr, wd = cfg["optimizer"], cfg["lr"], cfg["weight_decay"]
    if name == "sgd":
        return optim.SGD(params, lr=lr, weight_decay=wd)
    if name == "momentum":
        return optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=wd)
    return optim.RMSprop(params, lr=lr, weight_decay=wd)


def build_augmentation(name, meta):
    """The ``--augment`` preset ``name`` as a transform of standardised images (None for
    "none"): pixels moved in from outside are the data set's black, ``-mean / std``."""
    from .data import transforms

    if AUGMENT[name] is None:
        return None
    cls, kwargs = AUGMENT[name]
    return getattr(transforms, cls)(**kwargs, fill=-meta["mean"] / meta["std"])


def build_scheduler(cfg, optimizer):
    from . import optim

    if cfg["lr_schedule"] == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=max(cfg["epochs"], 1))
    if cfg["lr_schedule"] == "step":  # a tenth of the rate after 1/2 and 3/4 of the epochs
        return optim.StepLR(optimizer, step_size=max(cfg["epochs"] // 2, 1), gamma=0.1)
    return None


def load_split(dataset, data_dir):
    """``(x, y), (x_test, y_test), info``: images float32 (N, 1, 28, 28), standardised with the
    data set's mean and std; ``info`` is what the saved model's metadata records."""
    from .data import DATASETS

    cls = DATASETS[dataset]
    out = []
    for train in (True, False):
        ds = cls(data_dir, train=train, dtype="float32", normalize=True)
        out.append((ds.data.reshape(-1, 1, 28, 28), ds.targets))
    info = {
        "dataset": dataset,
        "classes": list(cls.classes),
        "input_shape": [1, 28, 28],
        "mean": cls.mean,
        "std": cls.std,
    }
    return out[0], out[1], info


class _Sigint:
    """The first Ctrl-C sets ``requested`` (the loop checkpoints after the current batch); a
    second one raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: leave Ctrl-C alone
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def write_metrics(path, history):
    """The per-epoch metrics so far: JSON lines (``.jsonl``/``.json``/``.ndjson``) or CSV."""
    from ._atomic import atomic_write

    text = _io.StringIO()
    if str(path).lower().endswith(".csv"):
        w = csv.DictWriter(text, fieldnames=METRIC_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(history)
    else:
        for row in history:
            text.write(json.dumps(row) + "\n")
    with atomic_write(path) as f:
        f.write(text.getvalue().encode())


def check_plot_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "--plot needs matplotlib, which is not installed: pip install 'nnfast[plot]'"
        ) from None


def write_plot(path, history, title):
    """A PNG with the loss (train, test) and accuracy (train, test) curves per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["loss"] for r in history], "o-", label="train")
    ax1.plot(epochs, [r["test_loss"] for r in history], "o-", label="test")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.plot(epochs, [100 * r["accuracy"] for r in history], "o-", label="train")
    ax2.plot(epochs, [100 * r["test_accuracy"] for r in history], "o-", label="test")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _check_resume(args, cfg):
    for key in RUN_OPTIONS:
        given = getattr(args, key, None)
        if given is not None and given != cfg[key]:
            flag = "--" + key.replace("_", "-")
            raise ValueError(
                f"--resume: the checkpoint was trained with {flag} {cfg[key]}, not {given}; "
                f"drop {flag} or start a new run without --resume"
            )


def _progress(total, initial, desc, quiet):
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="img", unit_scale=True,
                leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)  # fmt: skip


def run(args, on_batch=None) -> int:
    """Run ``nnfast train`` for parsed ``args``. ``on_batch(epoch, batch)`` is called after each
    batch; a true return acts as Ctrl-C (tests use it to interrupt at a chosen batch)."""
    import nnfast

    from .checkpoint import load_checkpoint, save_checkpoint
    from .data import DataLoader
    from .nn import CrossEntropyLoss
    from .train import evaluate

    check_outputs(args)
    if args.plot:
        check_plot_available()
    if args.threads is not None:
        nnfast.set_num_threads(args.threads)
    nnfast.set_gemm_backend(args.backend)

    ckpt_dir = Path(args.checkpoint_dir)
    ckpt_path = ckpt_dir / CHECKPOINT_NAME
    resumed = None
    if args.resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
        resumed = load_checkpoint(ckpt_path)  # for its configuration; restored again below
        cfg = dict(resumed["state"]["config"])
        cfg.setdefault("augment", "none")  # checkpoints from before --augment
        _check_resume(args, cfg)
        if args.epochs is not None:
            cfg["epochs"] = args.epochs
    else:
        cfg = resolve_config(args)

    (x, y), (x_test, y_test), meta = load_split(cfg["dataset"], args.data_dir)
    nnfast.manual_seed(cfg["seed"])
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model.parameters())
    scheduler = build_scheduler(cfg, optimizer)
    state = {"config": cfg, "epoch": 0, "batch": 0, "partial": None, "history": []}
    if resumed is not None:
        saved = load_checkpoint(ckpt_path, model, optimizer, scheduler)["state"]
        state.update(epoch=saved["epoch"], batch=saved["batch"], partial=saved["partial"],
                     history=saved["history"])  # fmt: skip
    history = state["history"]

    loss_fn = CrossEntropyLoss()
    bs, epochs = cfg["batch_size"], cfg["epochs"]
    augment = build_augmentation(cfg["augment"], meta)
    loader = DataLoader(x, y, batch_size=bs, seed=cfg["seed"], transform=augment)
    n, n_batches = len(x), len(loader)
    say = (lambda *a: None) if args.quiet else print
    what = f"{cfg['model']} on {cfg['dataset']}"
    if resumed is not None:
        where = f"epoch {state['epoch'] + 1}" + (
            f", batch {state['batch'] + 1}" if state["batch"] else ""
        )
        say(f"resuming {what} from {ckpt_path} at {where} of {epochs}")
    else:
        say(
            f"training {what}: {model.parameter_count():,} parameters, {cfg['optimizer']} "
            f"lr {cfg['lr']:g} ({cfg['lr_schedule']}), weight decay {cfg['weight_decay']:g}, "
            f"batch {bs}, {epochs} epochs, augment {cfg['augment']}, seed {cfg['seed']}, "
            f"{nnfast.get_num_threads()} threads, {nnfast.get_gemm_backend()} GEMM"
        )
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    def checkpoint():
        save_checkpoint(ckpt_path, model, optimizer, scheduler, state, meta)

    model.train()
    with _Sigint() as sigint:
        for epoch in range(state["epoch"] + 1, epochs + 1):
            order = loader.order(epoch - 1)
            first = state["batch"]
            p = state["partial"] or {"loss_sum": 0.0, "correct": 0, "seen": 0, "time": 0.0}
            loss_sum, correct, seen = p["loss_sum"], p["correct"], p["seen"]
            start = time.perf_counter() - p["time"]
            bar = _progress(n, seen, f"epoch {epoch}/{epochs}", args.quiet)
            for b in range(first, n_batches):
                sel = order[b * bs : (b + 1) * bs]
                xb, yb = x[sel], y[sel]
                if augment is not None:  # a function of (seed, epoch, batch): resumable
                    xb = loader.transform_batch(xb, epoch - 1, b)
                optimizer.zero_grad()
                out = model(xb)
                value = loss_fn(out, yb)
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"the loss is {value} at epoch {epoch}, batch {b + 1}: training "
                        f"diverged (try a smaller --lr)"
                    )
                model.backward(loss_fn.backward(), input_grad=False)
                optimizer.step()
                loss_sum += value * len(sel)
                correct += int(np.count_nonzero(out.argmax(axis=1) == yb))
                seen += len(sel)
                if bar is not None:
                    bar.update(len(sel))
                    if b % 20 == 0 or b == n_batches - 1:
                        rate = seen / max(time.perf_counter() - start, 1e-9)
                        bar.set_postfix_str(
                            f"loss {loss_sum / seen:.4f} acc {100 * correct / seen:.2f}% "
                            f"{rate:,.0f} samples/s",
                            refresh=False,
                        )
                stop = sigint.requested or (on_batch is not None and on_batch(epoch, b + 1))
                if stop and b + 1 < n_batches:
                    if bar is not None:
                        bar.close()
                    state.update(epoch=epoch - 1, batch=b + 1, partial={
                        "loss_sum": loss_sum, "correct": correct, "seen": seen,
                        "time": time.perf_counter() - start})  # fmt: skip
                    checkpoint()
                    raise TrainingInterrupted(
                        f"interrupted at epoch {epoch}, batch {b + 1} of {n_batches}; "
                        f"checkpoint written to {ckpt_path} (continue with --resume)"
                    )
            if bar is not None:
                bar.close()
            train_time = time.perf_counter() - start
            ev = evaluate(model, loss_fn, (x_test, y_test), batch_size=500)
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            row = {
                "epoch": epoch,
                "loss": loss_sum / n,
                "accuracy": correct / n,
                "test_loss": ev["loss"],
                "test_accuracy": ev["accuracy"],
                "lr": lr,
                "time": train_time,
                "samples_per_s": n / train_time,
            }
            history.append(row)
            state.update(epoch=epoch, batch=0, partial=None)
            checkpoint()
            if args.metrics_out:
                write_metrics(args.metrics_out, history)
            say(
                f"epoch {epoch:>{len(str(epochs))}}/{epochs}  loss {row['loss']:.4f}  "
                f"acc {100 * row['accuracy']:.2f}%  test loss {row['test_loss']:.4f}  "
                f"test acc {100 * row['test_accuracy']:.2f}%  lr {lr:.2e}  "
                f"{train_time:.1f}s ({row['samples_per_s']:,.0f} samples/s)"
            )
            if sigint.requested or (on_batch is not None and on_batch(epoch, n_batches)):
                if epoch < epochs:
                    raise TrainingInterrupted(
                        f"interrupted after epoch {epoch} of {epochs}; checkpoint written to "
                        f"{ckpt_path} (continue with --resume)"
                    )

    if args.metrics_out and history:
        write_metrics(args.metrics_out, history)
    if args.save:
        nnfast.io.save(model, args.save, metadata=meta)
        say(f"saved the model to {args.save}")
    if args.plot and history:
        write_plot(args.plot, history, f"{what}, {cfg['optimizer']} lr {cfg['lr']:g}")
        say(f"wrote the training curves to {args.plot}")
    acc = history[-1]["test_accuracy"] if history else evaluate(
        model, loss_fn, (x_test, y_test), batch_size=500)["accuracy"]  # fmt: skip
    print(f"test accuracy: {100 * acc:.2f}% ({cfg['model']} on {cfg['dataset']}, "
          f"{len(history)} epochs)")  # fmt: skip
    return 0
