"""The ``nnfast`` command line (also ``python -m nnfast``).

    nnfast train [--dataset mnist] [--model mlp|lenet5|cnn] [--epochs N] ...   train, checkpoint
    nnfast evaluate MODEL.npz [--dataset ...]     accuracy, per-class accuracy, confusion matrix
    nnfast predict MODEL.npz FILE...              class and probabilities of 28x28 images
    nnfast info                                   version, ISA paths, threads, BLAS
    nnfast bench gemm [--sizes 256,512]           GFLOP/s of the GEMM variants against BLAS

Exit status: 0 on success, 2 for a usage error, 1 for any other error (one line on stderr;
``--debug`` shows the traceback), 130 when Ctrl-C stopped training (after a checkpoint),
or 143 for SIGTERM (outside training too, e.g. while the data load: one line, not a silent
death).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# --- argument types -----------------------------------------------------------------------------
def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive_float(text):
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _thread_count(text):
    from ._runtime import MAX_THREADS

    value = _positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_THREADS}, got {value}")
    return value


def _fraction(text):
    value = _non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _dropout(text):
    value = _non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers like 256,128, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, got {text!r}")
    return values


def _shown(value):
    """A recipe's value as the command line takes it (lists comma-separated)."""
    return ",".join(map(str, value)) if isinstance(value, list) else value


def _channel_pair(text):
    values = _int_list(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected two channel counts like 32,64, got {text!r}")
    return values


def _metrics_path(text):
    if not text.lower().endswith((".csv", ".jsonl", ".json", ".ndjson")):
        raise argparse.ArgumentTypeError(
            f"{text!r}: the extension chooses the format: .csv, or .jsonl / .json for JSON lines"
        )
    return text


# --- train --------------------------------------------------------------------------------------
def _cmd_train(args) -> int:
    from ._cli_train import option_not_taken, run

    problem = option_not_taken(args)
    if problem:
        args.usage_error(problem)  # exit 2, before any data are loaded
    return run(args)


# --- evaluate and predict -----------------------------------------------------------------------
def _load_model(path, dataset=None):
    """The model at ``path`` and what feeding it needs: ``(model, info)``, ``info`` with
    ``trained_on`` (the metadata's data set), ``dataset`` (the one given, else ``trained_on``,
    else mnist), its ``classes``, and the ``mean``, ``std`` and ``input_shape`` of the training
    data (the metadata's, else the data set's). All are checked here against the model and
    28x28 images, so that a bad file fails before any work, with a message naming it."""
    import math

    import numpy as np

    from . import io
    from .data import DATASETS
    from .train import predict

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}")
    mf = io.open_model_file(path)  # read and checked once: the record, then the arrays
    model, meta = io.load_model_file(mf), mf.metadata
    trained_on = meta.get("dataset")
    name = dataset or trained_on or "mnist"
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(
            f"{path}: unknown dataset {name!r} in its metadata (known: {', '.join(DATASETS)})"
        )
    cls = DATASETS[name]
    info = {"trained_on": trained_on, "dataset": name, "classes": list(cls.classes)}
    for key, default in (("mean", cls.mean), ("std", cls.std)):
        value = meta.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: its metadata has {key} {value!r}, not a number")
        if not math.isfinite(value) or (key == "std" and value <= 0):
            must = "a finite number > 0" if key == "std" else "a finite number"
            raise ValueError(f"{path}: its metadata has {key} {value}; it must be {must}")
        info[key] = float(value)
    # the metadata's, else a first Linear's width (a model saved from Python), else an image
    shape = io.input_shape(model, meta) or [1, 28, 28]
    if (
        not isinstance(shape, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
        or math.prod(shape) != 28 * 28
    ):
        shown = tuple(shape) if isinstance(shape, list) else repr(shape)
        raise ValueError(f"{path} expects inputs of shape {shown} but the images are 28x28")
    info["input_shape"] = shape
    try:  # one blank image tells whether the model takes the shape, and its number of outputs
        k = predict(model, np.zeros((1, *shape), np.float32)).shape[-1]
    except ValueError as err:
        raise ValueError(
            f"{path}: the model does not take inputs of shape {tuple(shape)} ({err})"
        ) from err
    if k != len(cls.classes):
        raise ValueError(
            f"{path}: the model has {k} outputs but {name} has {len(cls.classes)} classes"
        )
    return model, info


def _unit_pixels(images, where):
    """Pixels as float32 in [0, 1]: integers 0..255, or floats in [0, 1] or 0..255; else a
    ValueError naming ``where`` (16-bit values, negative ones: a 100%-confident guess)."""
    import numpy as np

    x = np.asarray(images)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255)
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if x.dtype.kind in "iu" and (lo < 0 or hi > 255):
        raise ValueError(f"{where}: pixels {lo:g}..{hi:g} are outside 0..255 (16-bit images "
                         f"are not read: give 8-bit pixels, or floats in [0, 1])")  # fmt: skip
    if x.dtype.kind == "f" and (lo < 0 or hi > 255):
        raise ValueError(f"{where}: pixels {lo:g}..{hi:g} are outside [0, 1] and 0..255")
    x = x.astype(np.float32)
    if x.dtype.kind in "iu" or hi > 1.0:  # pixels 0..255 (as integers, or stored as floats)
        x /= np.float32(255)
    return x


def _normalise(x, info):
    """Pixels in [0, 1] (N, 28, 28) -> float32 (N, *input_shape), standardised as the model's
    training data were (``info`` from :func:`_load_model`)."""
    import numpy as np

    x = (x - np.float32(info["mean"])) / np.float32(info["std"])
    return np.ascontiguousarray(x.reshape(-1, *info["input_shape"]), dtype=np.float32)


def _probabilities(model, outputs):
    """Class probabilities from the model's outputs: a softmax of logits, or the outputs of a
    model that ends in Softmax (LogSoftmax: their exp) as they are."""
    import numpy as np

    from .nn import LogSoftmax, Sequential, Softmax

    last = list(model)[-1] if isinstance(model, Sequential) and len(model) else model
    if isinstance(last, Softmax):
        return outputs
    if isinstance(last, LogSoftmax):
        return np.exp(outputs)
    z = outputs - outputs.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _cmd_evaluate(args) -> int:
    import numpy as np

    from .data import DATASETS
    from .train import predict

    model, info = _load_model(args.model_path, args.dataset)
    dataset, trained_on = info["dataset"], info["trained_on"]
    cls = DATASETS[dataset]
    test = cls(args.data_dir, train=False, dtype="uint8")
    if trained_on and trained_on != dataset:
        print(f"note: the model was trained on {trained_on}; evaluating on {dataset}")
    x = _normalise(_unit_pixels(test.data, args.data_dir), info)
    y = test.targets
    pred = predict(model, x, batch_size=500).argmax(axis=1)
    k = len(cls.classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    acc = np.trace(confusion) / len(y)
    print(f"{args.model_path} on the {dataset} test set ({len(y):,} images): "
          f"accuracy {100 * acc:.2f}%")  # fmt: skip
    print("\nper-class accuracy:")
    names = [str(c) for c in cls.classes]
    width = max(len(n) for n in names)
    for i, name in enumerate(names):
        total = confusion[i].sum()
        frac = confusion[i, i] / total if total else float("nan")
        label = f"{i}" if name == str(i) else f"{i} {name:<{width}}"
        print(f"  {label}  {100 * frac:6.2f}%  ({confusion[i, i]}/{total})")
    print("\nconfusion matrix (rows: true class, columns: predicted class):")
    cell = max(len(str(confusion.max())), 3) + 1
    print("     " + "".join(f"{j:>{cell}}" for j in range(k)))
    for i in range(k):
        print(f"  {i:>2} " + "".join(f"{v:>{cell}}" for v in confusion[i]))
    return 0


def _read_png(path):
    try:
        from PIL import Image
    except ImportError:
        raise RuntimeError(
            f"{path}: reading images needs Pillow, which is not installed: "
            f"pip install 'nnfast[image]' (or give the image as .npy or IDX)"
        ) from None
    import numpy as np

    with Image.open(path) as im:
        if im.mode not in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr"):
            # convert("L") clips 16-bit and float pixels to 0 and 255
            raise ValueError(f"{path}: a {im.mode} image (16-bit or floating-point); give an "
                             f"8-bit greyscale or RGB image, or the pixels as .npy")  # fmt: skip
        if "A" in im.mode:  # transparency over black, MNIST's background
            im = im.convert("RGBA")
            black = Image.new("RGBA", im.size, (0, 0, 0, 255))
            im = Image.alpha_composite(black, im)
        im = im.convert("L")
        if im.size != (28, 28):
            raise ValueError(f"{path}: the image is {im.size[0]}x{im.size[1]}, expected 28x28")
        return np.asarray(im, dtype=np.uint8)[None]


def read_images(path):
    """Images (N, 28, 28) from a PNG (or another Pillow format), ``.npy`` or IDX file."""
    import numpy as np

    from .data import read_idx

    lower = path.lower()
    if lower.endswith(IMAGE_SUFFIXES):
        return _read_png(path)
    if lower.endswith(".npy"):
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as err:  # EOFError: an empty file
            raise ValueError(f"{path}: not a readable .npy array ({err})") from None
    else:
        x = read_idx(path)
    if x.dtype.kind not in "uif":
        raise ValueError(f"{path}: expected numeric pixels, found dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{path} holds no images")
    if x.shape[-2:] == (28, 28) and x.ndim in (2, 3, 4) and (x.ndim < 4 or x.shape[1] == 1):
        return x.reshape(-1, 28, 28)
    if x.ndim in (1, 2) and x.shape[-1] == 784:
        return x.reshape(-1, 28, 28)
    raise ValueError(
        f"{path}: expected 28x28 images, shaped (28, 28), (N, 28, 28), (N, 1, 28, 28) or "
        f"(N, 784); found shape {x.shape}"
    )


def _cmd_predict(args) -> int:
    import numpy as np

    from .train import predict

    model, info = _load_model(args.model_path)
    classes = info["classes"]
    for path in args.files:
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path} is a directory; give image files")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such file: {path}")
        images = read_images(path)
        if images.dtype.kind == "f" and not np.all(np.isfinite(images)):
            raise ValueError(f"{path}: holds NaN or infinite pixel values")
        x = _unit_pixels(images, path)
        if args.invert:  # each image on its own scale: 1 - x (was: the file's maximum - x)
            x = np.float32(1) - x
        probs = _probabilities(model, predict(model, _normalise(x, info), batch_size=500))
        if not np.all(np.isfinite(probs)):
            raise ValueError(f"{path}: the model's outputs are not finite (NaN or infinite)")
        for i, p in enumerate(probs):
            c = int(p.argmax())
            name = path if len(probs) == 1 else f"{path}[{i}]"
            label = classes[c] if str(classes[c]) != str(c) else str(c)
            print(f"{name}: {label} ({100 * p[c]:.1f}%)  "
                  + " ".join(f"{j}:{q:.3f}" for j, q in enumerate(p)))  # fmt: skip
    return 0


# --- export ------------------------------------------------------------------------------------
def _cmd_export(args) -> int:
    from .export import load_and_export

    if not os.path.isfile(args.model_path):
        raise FileNotFoundError(f"no model file at {args.model_path}")
    shape = load_and_export(args.model_path, args.output, args.input_shape)
    print(f"wrote {args.output} (input shape (N, {', '.join(map(str, shape))}))")
    return 0


# --- info and bench -----------------------------------------------------------------------------
def _cmd_info(args) -> int:
    import nnfast

    info = nnfast.info()
    print(f"nnfast {info['version']}")
    if info["native"]:
        print(f"native extension: yes (threads: {'yes' if info['threads'] else 'no'})")
        print(f"ISA paths compiled: {', '.join(info['isa_compiled'])}")
        print(f"ISA paths this CPU runs: {', '.join(info['isa_supported'])}")
        print(f"ISA in use: {info['isa']}")
        for dtype, kernels in info["gemm_kernels"].items():
            k = kernels[0]
            names = ", ".join(k["name"] for k in kernels)
            print(f"GEMM kernels {dtype}: {names} (MC={k['mc']} KC={k['kc']} NC={k['nc']})")
        for k in info["bf16_kernels"]:
            how = "AMX tiles" if k["tiles"] else "AVX512_BF16"
            if k["emulated"]:
                how = "emulated: fp32 FMAs on bf16-rounded operands"
            print(f"GEMM kernel bf16: {k['name']} ({how}; "
                  f"MC={k['mc']} KC={k['kc']} NC={k['nc']})")  # fmt: skip
    else:
        print(f"native extension: no ({info['native_error']}); every product uses SciPy's BLAS")
    print(f"GEMM backend of the layers: {nnfast.get_gemm_backend()}")
    print(f"matmul precision of float32 products: {info['matmul_precision']}")
    print(f"threads: {info['num_threads']}")
    print(f"SciPy BLAS: {info['blas']}{' (fallback in use)' if info['blas_fallback'] else ''}")
    return 0


def _cmd_bench_gemm(args) -> int:
    """Square float32 products, each variant timed once per round, rounds interleaved (the
    machine's speed drifts); medians of GFLOP/s and of the per-round ratio to BLAS."""
    import time

    import numpy as np

    import nnfast

    from ._native import core

    if args.threads is not None:
        nnfast.set_num_threads(args.threads)
    print(f"float32 GEMM, {nnfast.get_num_threads()} threads, {args.rounds} interleaved rounds "
          f"(median GFLOP/s; ratio = median of per-round time(blas) / time(variant))")  # fmt: skip
    header = f"{'size':>6}  {'variant':<8} {'GFLOP/s':>9} {'vs blas':>8}"
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for n in args.sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        out = np.empty((n, n), np.float32)
        variants = []
        if core is not None:
            if n <= args.naive_max:
                variants.append("naive")
            variants += ["blocked", "packed"]
        variants.append("blas")
        # ~0.1 GFLOP per timing at least, and at most 10,000 calls: a 1x1 product, all call
        # overhead, took 1e8 calls (half an hour) a timing
        reps = max(1, min(10_000, int(2e8 // (2 * n**3))))
        times = {v: [] for v in variants}
        for v in variants:  # warm up (thread team, packing buffers, BLAS loading)
            nnfast.gemm(a, b, out, variant=v)
        for _ in range(args.rounds):
            for v in variants:
                t0 = time.perf_counter()
                for _ in range(reps):
                    nnfast.gemm(a, b, out, variant=v)
                times[v].append((time.perf_counter() - t0) / reps)
        flop = 2.0 * n**3
        for v in variants:
            gflops = flop / np.median(times[v]) / 1e9
            ratio = np.median(np.array(times["blas"]) / np.array(times[v]))
            print(f"{n:>6}  {v:<8} {gflops:>9.1f} {ratio:>7.2f}x")
    return 0


# --- parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from ._cli_train import AUGMENT, DATASET_RECIPES, PRECISIONS, RECIPES

    parser = argparse.ArgumentParser(
        prog="nnfast",
        description="Neural networks on the CPU with C hot paths: train and use MNIST models.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # --debug is accepted after the command too (nnfast train --debug)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, **kwargs):
        return sub.add_parser(name, parents=[common], **kwargs)

    datasets = ("mnist", "fashion-mnist")
    p = command(
        "train",
        help="train a model on MNIST or Fashion-MNIST",
        description="Train a model, with a progress bar, a summary line and a checkpoint every "
        "epoch. Options not given come from the model's recipe: "
        + "; ".join(
            f"{m}: {r['optimizer']} lr {r['lr']:g} {r['lr_schedule']}, weight decay "
            f"{r['weight_decay']:g}, dropout {r['dropout']:g}, batch {r['batch_size']}, "
            f"{r['epochs']} epochs, augment {r['augment']}"
            for m, r in RECIPES.items()
        )
        + "; on another data set: "
        + "; ".join(
            f"{m} on {d}: "
            + ", ".join(f"{k.replace('_', ' ')} {_shown(v)}" for k, v in change.items())
            for (m, d), change in DATASET_RECIPES.items()
        )
        + ". Ctrl-C (or SIGTERM) writes a checkpoint and exits (status 130, or 143); --resume "
        "continues it.",
    )
    p.add_argument("--dataset", choices=datasets, help="default mnist")
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="directory with the four IDX files (.gz or not); without it "
        "$NNFAST_DATA and the cache are searched and missing files downloaded",
    )
    p.add_argument("--model", choices=tuple(RECIPES), help="default mlp")
    p.add_argument(
        "--hidden",
        type=_int_list,
        metavar="W1,W2",
        help="hidden layer widths of the mlp (default 256,128)",
    )
    p.add_argument(
        "--channels",
        type=_channel_pair,
        metavar="C1,C2",
        help="channels of the cnn's two convolutions (default 32,64; 48,96 on Fashion-MNIST)",
    )
    p.add_argument("--dropout", type=_dropout, metavar="P", help="dropout probability")
    p.add_argument("--epochs", type=_non_negative_int, metavar="N")
    p.add_argument("--batch-size", type=_positive_int, metavar="N")
    p.add_argument(
        "--optimizer",
        choices=("sgd", "momentum", "adam", "adamw", "rmsprop"),
        help="momentum is SGD with Nesterov momentum 0.9",
    )
    p.add_argument("--lr", type=_positive_float, metavar="X", help="(initial) learning rate")
    p.add_argument(
        "--lr-schedule",
        choices=("cosine", "step", "none"),
        help="cosine: annealed to 0 over the epochs; step: x0.1 every epochs/2",
    )
    p.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        metavar="X",
        help="decoupled for adamw, L2 for the others",
    )
    p.add_argument(
        "--label-smoothing",
        type=_fraction,
        metavar="EPS",
        help="mix the one-hot targets with the uniform distribution by EPS (default: the "
        "recipe's, 0 but for the cnn on Fashion-MNIST)",
    )
    p.add_argument(
        "--augment",
        choices=tuple(AUGMENT),
        help="random per-image augmentation of the training batches: shift (up to 2 pixels), "
        "affine (rotation up to 10 degrees, shift up to 10%%, scale 0.9-1.1), flip (mirrored "
        "left to right with probability 1/2)",
    )
    p.add_argument(
        "--val-split",
        type=_fraction,
        metavar="F",
        help="fraction of the training set held out (seeded) for the per-epoch validation "
        "lines; the test set is evaluated once, at the end. 0: validate on the test set every "
        "epoch (default 0.1)",
    )
    p.add_argument(
        "--threads",
        type=_thread_count,
        metavar="N",
        help="default: the CPUs this process may use (divided by the ranks on the machine with "
        "--distributed)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over MPI, under mpiexec (needs nnfast[mpi]); --batch-size is then "
        "the global batch and rank 0 prints and writes the files",
    )
    p.add_argument(
        "--backend",
        choices=("native", "blas"),
        default="native",
        help="GEMM of the layers: nnfast's kernels or SciPy's BLAS",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="GEMMs of Linear and Conv2d: fp32 (default), or bf16 operands with fp32 "
        "accumulation (mixed precision: weights, gradients, optimizer and the rest stay fp32; "
        "recorded in the checkpoint, which --resume follows)",
    )
    p.add_argument(
        "--seed",
        type=_non_negative_int,
        metavar="N",
        help="seed of initialisation, shuffling and dropout (default: random, printed)",
    )
    p.add_argument(
        "--save",
        metavar="PATH",
        default="model.npz",
        help="where to save the trained model (default model.npz)",
    )
    p.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        default="checkpoints",
        help="where checkpoint.npz is written every epoch (default checkpoints)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --checkpoint-dir (its settings are kept)",
    )
    p.add_argument(
        "--metrics-out",
        type=_metrics_path,
        metavar="PATH",
        help="per-epoch metrics as CSV (.csv) or JSON lines (.jsonl)",
    )
    p.add_argument(
        "--plot",
        metavar="PATH",
        help="PNG of the loss and accuracy curves (needs matplotlib: nnfast[plot])",
    )
    p.add_argument("--quiet", action="store_true", help="print only the final accuracy")
    p.set_defaults(func=_cmd_train, usage_error=p.error)

    p = command(
        "evaluate",
        help="accuracy, per-class accuracy and confusion matrix",
        description="Evaluate a saved model (or checkpoint) on a test set.",
    )
    p.add_argument("model_path", metavar="MODEL.npz")
    p.add_argument(
        "--dataset", choices=datasets, help="default: the data set the model was trained on"
    )
    p.add_argument("--data-dir", metavar="DIR")
    p.set_defaults(func=_cmd_evaluate)

    p = command(
        "predict",
        help="predicted class and probabilities of 28x28 images",
        description="Classify 28x28 grey images given as PNG (needs Pillow: nnfast[image]), "
        ".npy or IDX files (one image or a stack). Pixels are 0-255 (8-bit, or integers or "
        "floats in that range) or floats in [0, 1], light on dark as in MNIST (--invert for "
        "dark on light; transparent pixels read as black); they are "
        "standardised as the model's training data were.",
    )
    p.add_argument("model_path", metavar="MODEL.npz")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--invert", action="store_true", help="invert the pixels (dark on light)")
    p.set_defaults(func=_cmd_predict)

    p = command(
        "export",
        help="write a saved model as an ONNX graph",
        description="Write a saved model (.npz or .safetensors) as an ONNX inference graph with "
        "a dynamic batch dimension (needs onnx: nnfast[onnx]).",
    )
    p.add_argument("model_path", metavar="MODEL.npz")
    p.add_argument("output", metavar="MODEL.onnx")
    p.add_argument(
        "--input-shape",
        type=_int_list,
        metavar="C,H,W",
        help="one sample's shape (default: the one saved with the model, else the first "
        "layer's width)",
    )
    p.set_defaults(func=_cmd_export)

    p = command("info", help="version, ISA paths, threads and BLAS in use")
    p.set_defaults(func=_cmd_info)

    p = command("bench", help="quick benchmarks")
    bench = p.add_subparsers(dest="bench", required=True, metavar="WHAT")
    g = bench.add_parser(
        "gemm", parents=[common], help="GFLOP/s of the GEMM variants against SciPy's BLAS"
    )
    g.add_argument(
        "--sizes",
        type=_int_list,
        default=[256, 512, 1024],
        metavar="N,N",
        help="square sizes (default 256,512,1024)",
    )
    g.add_argument("--threads", type=_thread_count, metavar="N")
    g.add_argument("--rounds", type=_positive_int, default=5, metavar="N")
    g.add_argument(
        "--naive-max",
        type=_non_negative_int,
        default=256,
        metavar="N",
        help="time the naive triple loop only up to this size (default 256)",
    )
    g.set_defaults(func=_cmd_bench_gemm)
    return parser


def _one_line(err) -> str:
    from .data import DownloadError

    text = str(err) or type(err).__name__
    if isinstance(err, (DownloadError, FileNotFoundError)) and "Put these" in text:
        return text  # the offline message: which files to put where, on several lines
    return " ".join(text.split())


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside training (a Checkpoint handles it there)."""


def _raise_terminated(signum, frame):
    raise _Terminated


@contextlib.contextmanager
def _sigterm_as_exception():
    """SIGTERM raises _Terminated while the command runs, where its default would end the
    process without a word (before training: while the data load); a handler already
    installed (an embedding program's) and other threads are left alone."""
    try:
        previous = signal.getsignal(signal.SIGTERM)
        mine = previous == signal.SIG_DFL
        if mine:
            signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        mine = False
    try:
        yield
    finally:
        if mine:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ._cli_train import TrainingInterrupted

    try:
        with _sigterm_as_exception():
            return args.func(args)
    except _Terminated:
        if args.debug:
            raise
        print("nnfast: terminated", file=sys.stderr)
        return 143
    except TrainingInterrupted as err:
        if err.show:
            print(f"nnfast: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # output piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("nnfast: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            if _in_distributed_job():
                import traceback

                traceback.print_exc()
                _abort_job()
            raise
        print(f"nnfast: error: {_one_line(err)}", file=sys.stderr)
        if _in_distributed_job():
            _abort_job()
        return 1


def _in_distributed_job() -> bool:
    mpi = sys.modules.get("mpi4py.MPI")  # imported by --distributed only
    return (
        mpi is not None
        and mpi.Is_initialized()
        and not mpi.Is_finalized()
        and mpi.COMM_WORLD.Get_size() > 1
    )


def _abort_job() -> None:
    """An error on one rank ends the whole job: the other ranks would otherwise wait for this
    one in their next collective call, forever. Called after the error is shown."""
    sys.stdout.flush()
    sys.stderr.flush()
    sys.modules["mpi4py.MPI"].COMM_WORLD.Abort(1)


if __name__ == "__main__":
    sys.exit(main())
