"""Train a small long-tailed image classifier from scratch, then correct it with AlphaNet.

The images are made here: 12 classes, each a shape (disk, square, triangle,
cross) filled with a texture (solid, stripes, checks), at a random place and
size, with noise. Training counts fall from 300 to 5 images a class, so four
classes are rare (fewer than 20 images). A plain CNN trained with
cross-entropy on them neglects the rare classes; ``correct_model`` moves the
rare classes' last-layer weights towards those of similar frequent classes
(same shape or same texture) and nothing else.

Run ``python examples/long_tail_cnn.py`` (under a minute on 2 free cores), or with
``--quick`` for a tiny run that only checks that everything works.
"""

from __future__ import annotations

import argparse
import time

import alphanet_fast as af
import alphanet_fast.torch as aft
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

SHAPES = ("disk", "square", "triangle", "cross")
TEXTURES = ("solid", "stripes", "checks")
COUNTS = (300, 220, 160, 120, 90, 65, 45, 30, 18, 12, 8, 5)
SIZE = 24


def draw(shape: int, texture: int, rng: np.random.Generator) -> np.ndarray:
    """One noisy SIZE x SIZE image of a textured shape at a random place and scale."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    cy, cx = rng.uniform(9, 15, size=2)
    r = rng.uniform(5, 8)
    dy, dx = yy - cy, xx - cx
    if SHAPES[shape] == "disk":
        mask = dy**2 + dx**2 <= r**2
    elif SHAPES[shape] == "square":
        mask = (np.abs(dy) <= 0.8 * r) & (np.abs(dx) <= 0.8 * r)
    elif SHAPES[shape] == "triangle":
        mask = (dy <= 0.8 * r) & (dy >= -r + 2 * np.abs(dx))
    else:
        mask = ((np.abs(dy) <= r) & (np.abs(dx) <= r / 3)) | (
            (np.abs(dx) <= r) & (np.abs(dy) <= r / 3)
        )
    period = rng.integers(3, 5)
    if TEXTURES[texture] == "solid":
        fill = np.ones_like(yy)
    elif TEXTURES[texture] == "stripes":
        fill = ((yy.astype(int) // 2) % 2 == 0).astype(np.float32)
    else:
        fill = (((yy.astype(int) // period) + (xx.astype(int) // period)) % 2).astype(np.float32)
    image = mask * (0.3 + 0.7 * fill) + rng.normal(0, 0.35, size=(SIZE, SIZE))
    return image.astype(np.float32)[None]


def make_split(counts: list[int], rng: np.random.Generator) -> TensorDataset:
    """``counts[c]`` images of class c; class c is shape c // 3 with texture c % 3."""
    labels = np.repeat(np.arange(len(counts)), counts)
    images = np.stack([draw(c // 3, c % 3, rng) for c in labels])
    return TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))


class SmallCNN(nn.Module):
    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.fc = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def train(model: nn.Module, data: TensorDataset, epochs: int, seed: int) -> None:
    """Plain cross-entropy with Adam: what leaves the rare classes behind."""
    loader = DataLoader(
        data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(epochs):
        total = 0.0
        for x, y in loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
        print(f"epoch {epoch + 1}/{epochs}: training loss {total / len(data):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (a few seconds)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the data and the training")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    scale, epochs, correct_epochs = (0.3, 1, 3) if args.quick else (1.0, 20, 25)
    # Rare classes at random places in the shape x texture grid.
    counts = np.array(COUNTS)[rng.permutation(len(COUNTS))]
    counts = [max(int(c * scale), 3) if c >= 20 else c for c in counts]
    n_eval = 10 if args.quick else 40
    train_set = make_split(counts, rng)
    val_set = make_split([n_eval] * len(counts), rng)
    test_set = make_split([n_eval] * len(counts), rng)

    start = time.perf_counter()
    model = SmallCNN(len(counts))
    train(model, train_set, epochs, args.seed)
    print(f"trained in {time.perf_counter() - start:.1f} s")

    # The three lines that matter: loaders without shuffling or augmentation.
    train_loader = DataLoader(train_set, batch_size=256)
    val_loader = DataLoader(val_set, batch_size=256)
    corrected, res = aft.correct_model(
        model, train_loader, val_loader=val_loader, epochs=correct_epochs, progress=False
    )

    test = aft.extract(model, DataLoader(test_set, batch_size=256))
    head = model.fc
    W, b = head.weight.detach().numpy(), head.bias.detach().numpy()
    before = af.evaluate(test.features, test.labels, W, b, splits=res)
    after = af.evaluate(test.features, test.labels, res.W, res.b, splits=res)
    names = [f"{SHAPES[c // 3]}/{TEXTURES[c % 3]}" for c in range(len(counts))]
    rare = ", ".join(f"{names[c]} ({counts[c]})" for c in res.splits.few)
    print(f"\nrare classes (training images): {rare}")
    print(before.table(after, names=["baseline", "AlphaNet"]))
    print(f"total {time.perf_counter() - start:.1f} s")
    assert corrected is not model  # the trained model is left as it was


if __name__ == "__main__":
    main()
