#!/usr/bin/python3
"""The PyTorch peer of bench/train_bench.sh: Fashion-MNIST with the model and
training loop that mlpc's trainer (runtime/train/trainer.cc) runs, written in
PyTorch Python (Debian's python3-torch, the same LibTorch underneath).

  train_torch.py --model mlp|cnn --ranks 1|2 --epochs E --batch B --threads T [--limit N]

Prints `torch_<model>_<ranks>rank_samples_per_s: V samples/s` and
`torch_<model>_<ranks>rank_test_accuracy: A fraction` on stdout; notes go to
stderr. Uses numpy and gzip only for the data: no torchvision, no network.

Two ranks: torch.distributed over gloo, two spawned processes meeting at a TCP
store on 127.0.0.1 (a free port). Rank r trains on the contiguous slice
[floor(r*n/2), floor((r+1)*n/2)) of the n training rows, which is how a data
stage with `shards = 2` cuts them, with its own per-epoch randperm seeded as mlpc seeds rank r, batch
size B per rank, the model wrapped in DistributedDataParallel, T threads per
rank. Global samples/s = rows trained by both ranks / the epoch's wall time,
the slower rank's.
"""

import argparse
import contextlib
import gzip
import json
import math
import os
import socket
import struct
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530
# mlpc's trainer seeds each epoch's shuffle with mix_seed(seed ^ this, epoch, rank) (trainer.cc).
SHUFFLE_XOR = 0x5BD1E995
M64 = (1 << 64) - 1


def mix_seed(seed, epoch, rank):
    """trainer.cc's MixSeed: the per-epoch, per-rank seed (0-based epoch)."""
    x = (seed ^ ((0x9E3779B97F4A7C15 * (epoch + 1)) & M64) ^ ((0xBF58476D1CE4E5B9 * (rank + 1)) & M64)) & M64
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & M64
    x ^= x >> 29
    return x & 0x7FFFFFFFFFFFFFFF


def note(msg):
    print(f"train_torch: {msg}", file=sys.stderr, flush=True)


def read_idx(path, magic, limit):
    """An IDX file (gzip) as a uint8 array; raises ValueError on a malformed file."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for an IDX header")
    got, n = struct.unpack(">II", data[:8])
    if got != magic:
        raise ValueError(f"{path}: IDX magic {got:#x}, expected {magic:#x}")
    dims = [n]
    if magic == 2051:
        if len(data) < 16:
            raise ValueError(f"{path}: too short for an image header")
        dims += list(struct.unpack(">II", data[8:16]))
        off = 16
    else:
        off = 8
    count = int(np.prod(dims))
    if len(data) - off < count:
        raise ValueError(f"{path}: {len(data) - off} data bytes, the header promises {count}")
    arr = np.frombuffer(data, dtype=np.uint8, count=count, offset=off).reshape(dims)
    return arr[:limit] if limit else arr


def load(split, limit=0, data_dir=DATA_DIR):
    """Images as float32 (n, 28, 28), scaled as the pipelines' `scale` kernel does, and int64 labels."""
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"), 2051, limit)
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"), 2049, limit)
    if len(images) != len(labels):
        raise ValueError(f"{prefix}: {len(images)} images but {len(labels)} labels")
    x = (images.astype(np.float32) / np.float32(255.0) - np.float32(MEAN)) / np.float32(STD)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(labels.astype(np.int64))


class Reshape(nn.Module):
    def __init__(self, *shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(*self.shape)


def build(model):
    """The stdlib's mlp(hidden: [256, 128], classes: 10) / cnn(channels: [32, 64], classes: 10) on 28x28 images."""
    if model == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    layers, c, hw = [Reshape(-1, 1, 28, 28)], 1, 28
    for ch in (32, 64):
        layers += [nn.Conv2d(c, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c, hw = ch, hw // 2
    layers += [nn.Flatten(), nn.Linear(c * hw * hw, 10)]
    return nn.Sequential(*layers)


def train_epoch(model, opt, X, Y, bs, seed, rank, epoch):
    """One epoch (1-based) of mlpc's loop; returns (seconds, mean loss, accuracy)."""
    n = X.shape[0]
    torch.manual_seed(mix_seed(seed, epoch - 1, rank))  # dropout's stream, as mlpc seeds it
    start = time.perf_counter()
    g = torch.Generator().manual_seed(mix_seed(seed ^ SHUFFLE_XOR, epoch - 1, rank))
    perm = torch.randperm(n, generator=g)
    loss_sum, correct = 0.0, 0
    for b in range(0, n, bs):
        idx = perm[b:b + bs]
        x = X.index_select(0, idx)
        y = Y.index_select(0, idx)
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        l = loss.item()
        if not math.isfinite(l):
            raise RuntimeError(f"epoch {epoch}, batch {b // bs + 1}: the loss is {l}")
        loss_sum += l * idx.shape[0]
        correct += (out.argmax(1) == y).sum().item()
    secs = time.perf_counter() - start
    return secs, loss_sum / n, correct / n


def set_lr(opt, args, epoch):
    """mlpc's step_lr(every: 1, gamma): lr * gamma^(epoch - 1), set at the start of each epoch."""
    for g in opt.param_groups:
        g["lr"] = args.lr * args.gamma ** (epoch - 1)


def test_accuracy(model, bs):
    Xt, Yt = load("test")
    model.eval()
    correct, step = 0, max(bs, 256)
    with torch.no_grad():
        for b in range(0, Xt.shape[0], step):
            correct += (model(Xt[b:b + step]).argmax(1) == Yt[b:b + step]).sum().item()
    model.train()
    return correct / Xt.shape[0]


def run_one(args):
    torch.set_num_threads(args.threads)
    X, Y = load("train", args.limit)
    torch.manual_seed(args.seed)
    model = build(args.model)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    opt.zero_grad()
    rates = []
    for e in range(1, args.epochs + 1):
        set_lr(opt, args, e)
        secs, loss, acc = train_epoch(model, opt, X, Y, args.batch, args.seed, 0, e)
        rates.append(X.shape[0] / secs)
        note(f"epoch {e}/{args.epochs}: loss {loss:.4f} accuracy {acc:.4f} samples/s {rates[-1]:.0f} ({secs:.2f} s)")
    return rates, test_accuracy(model, args.batch)


def slice_begin(n, i, count):
    return n * i // count


def rank_main(rank, args, port, result_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    world = args.ranks
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        X, Y = load("train", args.limit)
        n = X.shape[0]
        lo, hi = slice_begin(n, rank, world), slice_begin(n, rank + 1, world)
        X, Y = X[lo:hi].contiguous(), Y[lo:hi].contiguous()
        # Uneven batch counts need DDP's join (an extra all-reduce per step), so only then.
        steps = [-(-(slice_begin(n, r + 1, world) - slice_begin(n, r, world)) // args.batch) for r in range(world)]
        torch.manual_seed(args.seed)
        model = DDP(build(args.model))  # DDP broadcasts rank 0's parameters
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        opt.zero_grad()
        rates = []
        for e in range(1, args.epochs + 1):
            dist.barrier()  # all ranks start the epoch together
            set_lr(opt, args, e)
            with model.join() if len(set(steps)) > 1 else contextlib.nullcontext():
                secs, loss, acc = train_epoch(model, opt, X, Y, args.batch, args.seed, rank, e)
            t = torch.tensor([secs], dtype=torch.float64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            rates.append(n / t.item())
            if rank == 0:
                note(f"epoch {e}/{args.epochs} (rank 0): loss {loss:.4f} accuracy {acc:.4f}; "
                     f"global samples/s {rates[-1]:.0f} ({t.item():.2f} s, slowest rank)")
        if rank == 0:
            acc = test_accuracy(model.module, args.batch)
            with open(result_path, "w") as f:
                json.dump({"rates": rates, "accuracy": acc}, f)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ddp(args):
    import torch.multiprocessing as mp

    # Gloo picks its interface from the hostname, which may not resolve here; all ranks are local.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        mp.spawn(rank_main, args=(args, free_port(), result), nprocs=args.ranks, join=True)
        with open(result) as f:
            r = json.load(f)
    return r["rates"], r["accuracy"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["mlp", "cnn"], required=True)
    p.add_argument("--ranks", type=int, choices=[1, 2], default=1)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128, help="examples per step on each rank")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per rank")
    p.add_argument("--limit", type=int, default=0, help="training rows to read; 0 reads all")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate in epoch 1")
    p.add_argument("--gamma", type=float, default=1.0,
                   help="the learning rate's factor per epoch (mlpc's step_lr(every: 1, gamma: G))")
    args = p.parse_args()
    if args.epochs < 1 or args.batch < 1 or args.threads < 1 or args.limit < 0:
        p.error("--epochs, --batch and --threads must be >= 1 and --limit >= 0")
    note(f"torch {torch.__version__}, {args.model}, {args.ranks} rank(s), {args.epochs} epoch(s), "
         f"batch {args.batch} per rank, {args.threads} thread(s) per rank, limit {args.limit or 'none'}")
    rates, acc = run_one(args) if args.ranks == 1 else run_ddp(args)
    if len(rates) > 1:
        rate = sum(rates[1:]) / len(rates[1:])
        note(f"samples/s: mean of epochs 2..{len(rates)} (epoch 1 left out as warm-up)")
    else:
        rate = rates[0]
        note("samples/s: the one epoch")
    name = f"torch_{args.model}_{args.ranks}rank"
    print(f"{name}_samples_per_s: {rate:.1f} samples/s")
    print(f"{name}_test_accuracy: {acc:.4f} fraction")


if __name__ == "__main__":
    main()
