"""XOR: a single perceptron cannot learn it (not linearly separable); a 2-2-1 MLP can.

python examples/xor.py
"""

import warnings

import numpy as np

import nnfast
from nnfast import nn, optim
from nnfast.classic import ConvergenceWarning, Perceptron
from nnfast.train import fit, predict

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
y = np.array([0, 1, 1, 0])


def main():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        p = Perceptron(max_epochs=100, seed=0).fit(X, y)
    print(f"perceptron: converged={p.converged_}, accuracy {p.score(X, y):.2f}")
    for w in caught:
        print(f"  warning: {w.message}")

    nnfast.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2, activation="tanh"), nn.Linear(2, 1))
    loss = nn.BCEWithLogitsLoss()
    opt = optim.Adam(model.parameters(), lr=0.05)
    history = fit(model, loss, opt, (X, y.astype(np.float32)), epochs=500, batch_size=4, seed=0)
    out = predict(model, X)
    pred = (out[:, 0] > 0).astype(int)
    print(f"2-2-1 MLP: loss {history['loss'][-1]:.4f}, accuracy {np.mean(pred == y):.2f}")
    print(model)
    return p, model


if __name__ == "__main__":
    main()
