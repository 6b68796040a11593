"""Logistic regression on an imbalanced synthetic set: focal loss vs cross-entropy.

2,000 samples with 5 features and about 10 % positives, trained by mini-batch
SGD twice: with focal loss (alpha = 0.75, gamma = 2) and with plain
cross-entropy (gamma = 0, alpha = 0.5, which weights both classes equally).
Prints the loss of every epoch, then the confusion matrix, precision and recall
of both models on the training set.

The data come from a tiny portable generator (splitmix64 + Box-Muller), the
same as in examples/cpp/logistic_regression.cpp, so the C++ example prints the
same numbers (up to rounding in the last digits of the losses).

Run:  python examples/logistic_regression.py
"""

from __future__ import annotations

import math

import focal_native
import numpy as np

N_SAMPLES, N_FEATURES = 2000, 5
TRUE_W, TRUE_B = (1.5, -2.0, 1.0, 0.5, 0.0), -4.4
EPOCHS, BATCH, LEARNING_RATE = 30, 100, 0.5
MASK = (1 << 64) - 1


class SplitMix64:
    """splitmix64: a 64-bit generator that is easy to write identically in C++."""

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self) -> float:
        return (self.next() >> 11) * 2.0**-53  # [0, 1)

    def normal(self) -> float:
        u1, u2 = self.uniform(), self.uniform()
        return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)


def make_data(seed: int = 2024):
    """Features ~ N(0, 1); label ~ Bernoulli(sigmoid(w.x + b)) with b chosen for ~10 % positives."""
    rng = SplitMix64(seed)
    x = np.empty((N_SAMPLES, N_FEATURES))
    y = np.empty(N_SAMPLES, dtype=np.uint8)
    for i in range(N_SAMPLES):
        t = 0.0
        for j in range(N_FEATURES):
            x[i, j] = rng.normal()
            t += TRUE_W[j] * x[i, j]
        t += TRUE_B
        y[i] = 1 if rng.uniform() < 1.0 / (1.0 + math.exp(-t)) else 0
    return x, y


def train(x, y, alpha: float, gamma: float):
    """Mini-batch SGD on the mean focal loss; returns weights, bias and epoch losses."""
    w = np.zeros(x.shape[1])
    b = 0.0
    losses = []
    for _ in range(EPOCHS):
        total = 0.0
        for s in range(0, len(y), BATCH):
            xb, yb = x[s : s + BATCH], y[s : s + BATCH]
            logits = xb @ w + b
            loss, grad = focal_native.sigmoid_focal_loss_with_grad(
                logits, yb, alpha=alpha, gamma=gamma, reduction="mean"
            )
            # grad = d(mean loss)/d(logits); the chain rule gives the rest.
            w -= LEARNING_RATE * (xb.T @ grad)
            b -= LEARNING_RATE * float(grad.sum())
            total += float(loss) * len(yb)
        losses.append(total / len(y))
    return w, b, losses


def confusion(x, y, w, b):
    pred = (x @ w + b) > 0.0  # p > 1/2
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    return tp, fp, fn, tn


def main() -> None:
    x, y = make_data()
    print(f"focal_native {focal_native.__version__} (Python): logistic regression, "
          f"{N_SAMPLES} samples, {N_FEATURES} features, {100.0 * y.mean():.1f}% positive")
    models = {
        "focal": train(x, y, alpha=0.75, gamma=2.0),
        "cross-entropy": train(x, y, alpha=0.5, gamma=0.0),
    }
    print("epoch   focal (alpha=0.75, gamma=2)   cross-entropy (alpha=0.5, gamma=0)")
    for e in range(EPOCHS):
        print(f"{e + 1:5d}   {models['focal'][2][e]:27.8f}   {models['cross-entropy'][2][e]:34.8f}")
    print()
    for name, (w, b, _) in models.items():
        tp, fp, fn, tn = confusion(x, y, w, b)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        print(f"{name}: confusion matrix (rows: true 1, true 0; columns: predicted 1, predicted 0)")
        print(f"    {tp:5d} {fn:5d}")
        print(f"    {fp:5d} {tn:5d}")
        print(f"{name}: precision {precision:.4f} recall {recall:.4f} "
              f"TP {tp} FP {fp} FN {fn} TN {tn}")


if __name__ == "__main__":
    main()
