"""A GAN on MNIST (Goodfellow et al., 2014): two MLPs, no autograd, gradients passed by hand.

The generator G maps noise z to an image; the discriminator D maps an image to a logit
("real"). D learns to tell MNIST digits from G's fakes; G learns to make D call its fakes real,
with the non-saturating loss -log D(G(z)). The point of the example is the generator step,
where G's gradient comes *through* D: ``d.backward(...)`` returns the gradient with respect to D's
input, the fake images, which ``g.backward`` takes from there. D's own parameter gradients from
that pass are discarded.

    python examples/gan_mnist.py --data-dir ../shared/data/mnist --epochs 20 --seed 0 \\
        --out /tmp/gan_samples.png [--save /tmp/generator.npz]

``--out`` writes an 8x8 grid of samples as a PNG with matplotlib (``pip install 'nnfast[plot]'``),
or their array as ``.npy`` when matplotlib is not installed.
"""

import argparse
import time
from pathlib import Path

import numpy as np

import nnfast
from nnfast import nn, optim
from nnfast.data import MNIST, DataLoader


def build(z_dim=64, g_hidden=(256, 512), d_hidden=(512, 256), image_size=784):
    """G: z (N, z_dim) -> images (N, image_size) in [-1, 1]; D: images -> logits (N, 1)."""
    sizes = (z_dim, *g_hidden)
    g = nn.Sequential(
        *[nn.Linear(a, b, activation="relu") for a, b in zip(sizes, sizes[1:])],
        nn.Linear(sizes[-1], image_size, activation="tanh"),  # the range of the scaled data
    )
    layers, width = [], image_size
    for h in d_hidden:  # slope 0.2, not Linear's fused 0.01: keeps D's gradient alive for G
        layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
        width = h
    d = nn.Sequential(*layers, nn.Linear(width, 1))
    return g, d


def train_step(g, d, g_opt, d_opt, loss, real, z):
    """One D update then one G update; returns (D loss, G loss, mean D(x), mean D(G(z)))."""
    ones, zeros = np.ones((len(real), 1), np.float32), np.zeros((len(z), 1), np.float32)
    fake = g(z)
    # D: maximise log D(x) + log(1 - D(G(z))). backward accumulates, so the two passes add up.
    d_opt.zero_grad()
    d_real = d(real)
    d_loss = loss(d_real, ones)
    d.backward(loss.backward(), input_grad=False)
    d_fake = d(fake)  # G is not updated here, so its backward is never called
    d_loss += loss(d_fake, zeros)
    d.backward(loss.backward(), input_grad=False)
    d_opt.step()
    # G: minimise -log D(G(z)) (non-saturating: strong gradients while D rejects the fakes).
    # The same fakes, so G's forward cache is still the right one.
    g_opt.zero_grad()
    g_loss = loss(d(fake), ones)
    g.backward(d.backward(loss.backward()), input_grad=False)  # dL/dfake, then into G
    d_opt.zero_grad()  # D's gradients from this pass would train D to call fakes real
    g_opt.step()
    return d_loss, g_loss, _sigmoid(d_real).mean(), _sigmoid(d_fake).mean()


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def train(images, epochs, *, z_dim=64, g_hidden=(256, 512), d_hidden=(512, 256),
          batch_size=64, lr=2e-4, seed=0, log=print):  # fmt: skip
    """Train a GAN on ``images`` (N, ...): uint8 pixels 0-255 or floats already in [-1, 1].

    Returns ``(g, d, history)``, history one dict per epoch. Same seed, same result.
    """
    images = np.asarray(images).reshape(len(images), -1)
    nnfast.manual_seed(seed)
    g, d = build(z_dim, g_hidden, d_hidden, images.shape[1])
    # betas=(0.5, 0.999) as Radford et al. (2016): less momentum in a moving two-player game
    g_opt = optim.Adam(g.parameters(), lr=lr, betas=(0.5, 0.999))
    d_opt = optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
    loss = nn.BCEWithLogitsLoss()
    to_range = (lambda x: x / np.float32(127.5) - 1) if images.dtype == np.uint8 else None
    loader = DataLoader(
        images, batch_size=batch_size, seed=seed, drop_last=True, transform=to_range
    )
    noise = np.random.default_rng([seed, 1])  # its own stream, apart from the loader's
    history = []
    for epoch in range(1, epochs + 1):
        start, sums = time.perf_counter(), np.zeros(4)
        for real in loader:
            z = noise.standard_normal((len(real), z_dim), np.float32)
            sums += train_step(g, d, g_opt, d_opt, loss, real, z)
        row = dict(zip(("d_loss", "g_loss", "d_x", "d_g_z"), sums / len(loader)))
        row.update(epoch=epoch, time=time.perf_counter() - start)
        history.append(row)
        log(
            f"epoch {epoch:>{len(str(epochs))}}/{epochs}  D loss {row['d_loss']:.3f}  "
            f"G loss {row['g_loss']:.3f}  D(x) {row['d_x']:.3f}  D(G(z)) {row['d_g_z']:.3f}  "
            f"{row['time']:.1f}s"
        )
    return g, d, history


def save_samples(images, path):
    """An 8x8 grid of (64, 28, 28) images in [-1, 1] as a PNG, or the array as .npy without
    matplotlib; returns the path written."""
    try:
        import matplotlib
    except ImportError:
        path = Path(path).with_suffix(".npy")
        np.save(path, images)
        return path
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    tiles = np.pad(images, ((0, 0), (1, 1), (1, 1)), constant_values=-1)  # a dark frame each
    h, w = tiles.shape[1:]
    grid = tiles.reshape(8, 8, h, w).transpose(0, 2, 1, 3).reshape(8 * h, 8 * w)
    plt.imsave(path, grid, cmap="gray", vmin=-1, vmax=1)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", help="directory with the MNIST IDX files (else the cache)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write 64 samples here (PNG, or .npy without matplotlib)")
    p.add_argument("--save", help="save the generator here (.npz, nnfast.io.load reads it)")
    args = p.parse_args(argv)
    if args.out:  # say so now, not after training (as nnfast train --plot checks first)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "matplotlib is not installed (pip install 'nnfast[plot]'): --out will get "
                f"a .npy of the samples, {Path(args.out).with_suffix('.npy')}"
            )

    images = MNIST(args.data_dir, train=True, dtype="uint8").data  # (60000, 28, 28) uint8
    g, _, history = train(images, args.epochs, batch_size=args.batch_size, seed=args.seed)
    z_dim = g[0].in_features
    z = np.random.default_rng([args.seed, 2]).standard_normal((64, z_dim), np.float32)
    samples = g.eval()(z).reshape(64, 28, 28)
    if args.out:
        print(f"wrote 64 samples to {save_samples(samples, args.out)}")
    if args.save:
        nnfast.io.save(g, args.save, metadata={"z_dim": z_dim, "output": "28x28 in [-1, 1]"})
        print(f"saved the generator to {args.save}")
    return g, history


if __name__ == "__main__":
    main()
