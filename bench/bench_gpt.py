"""A small GPT's training step and generation: clnet beside PyTorch (CPU) on the same cores, in the
same run.

    .venv/bin/python bench/bench_gpt.py [--device SPEC] [--repeats R] [--rounds N] [--batch B]

The model is examples/char_gpt.py's: clnet.nn.gpt(vocab=96, context=64, dim=128, heads=4,
layers=4), float32, and the same model written with torch.nn's modules (nn.MultiheadAttention
with a causal mask, nn.LayerNorm, exact GELU). A training step is one mini-batch of `fit` (clnet:
cross-entropy per position, AdamW; the ids checked and copied to the device per call, then gathered
by index as fit does) or one forward, backward and AdamW step of the PyTorch model
(torch.set_num_threads(cores)). Generation
is 16 tokens, one at a time, each the most likely after a window of 64 (clnet: `net.generate`, its
batch-of-one pass replayed; PyTorch: the model under no_grad, the window shifted by torch.cat);
the whole window is recomputed per token in both (no key/value cache). Times: the median of
`rounds` medians of `repeats` runs, the libraries alternating, PyTorch in a process of its own
(PoCL's threads slow it in clnet's); --activation gelu_tanh runs GPT-2's GELU in both. Ratios:
clnet's time / PyTorch's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402

VOCAB, CONTEXT, DIM, HEADS, LAYERS, STEPS, TOKENS = 96, 64, 128, 4, 4, 2, 16
APPROXIMATE = {"gelu": "none", "gelu_tanh": "tanh"}  # PyTorch's name for each of clnet's GELUs


def torch_gpt(activation: str = "gelu"):
    import torch

    class GPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.pos = torch.nn.Embedding(VOCAB, DIM), torch.nn.Parameter(torch.zeros(CONTEXT, DIM))
            self.blocks = torch.nn.ModuleList(torch.nn.ModuleList([
                torch.nn.LayerNorm(DIM), torch.nn.MultiheadAttention(DIM, HEADS, batch_first=True),
                torch.nn.LayerNorm(DIM), torch.nn.Linear(DIM, 4 * DIM), torch.nn.Linear(4 * DIM, DIM)])
                for _ in range(LAYERS))
            self.ln, self.head = torch.nn.LayerNorm(DIM), torch.nn.Linear(DIM, VOCAB)
            self.register_buffer("mask", torch.triu(torch.ones(CONTEXT, CONTEXT, dtype=torch.bool), 1))

        def forward(self, ids):
            x = self.emb(ids) + self.pos
            for ln1, attention, ln2, fc1, fc2 in self.blocks:
                h = ln1(x)
                x = x + attention(h, h, h, attn_mask=self.mask, need_weights=False)[0]
                x = x + fc2(torch.nn.functional.gelu(fc1(ln2(x)), approximate=APPROXIMATE[activation]))
            return self.head(self.ln(x))

    return GPT()


def data(batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, VOCAB, (batch * STEPS, CONTEXT)), rng.integers(0, VOCAB, (batch * STEPS, CONTEXT))


def clnet_runs(ctx, batch: int, activation: str) -> dict:
    ids, following = data(batch)
    net = clnet.InferenceNetwork(ctx, CONTEXT, clnet.nn.gpt(VOCAB, CONTEXT, DIM, HEADS, LAYERS, activation=activation),
                                 seed=0)
    adamw = clnet.AdamW(1e-4)
    return {"clnet train": lambda: net.fit(ids, following, epochs=1, batch_size=batch, optimizer=adamw,
                                           progress=False),
            "clnet token": lambda: net.generate(ids[0], TOKENS, temperature=0)}


def torch_runs(batch: int, activation: str) -> dict:
    import torch

    ids, following = data(batch)
    model = torch_gpt(activation)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    xt, yt = torch.tensor(ids), torch.tensor(following)

    def epoch():
        model.train()
        for i in range(STEPS):
            optimizer.zero_grad()
            rows = slice(i * batch, (i + 1) * batch)
            torch.nn.functional.cross_entropy(model(xt[rows]).reshape(-1, VOCAB), yt[rows].reshape(-1)).backward()
            optimizer.step()

    def tokens():
        model.eval()
        window = xt[:1].clone()
        with torch.no_grad():
            for _ in range(TOKENS):
                following = model(window)[0, -1].argmax()
                window = torch.cat([window[:, 1:], following.reshape(1, 1)], dim=1)

    return {"torch train": epoch, "torch token": tokens}


def medians(timed: dict, repeats: int) -> dict:
    return {kind: common.median_seconds(run, repeats) for kind, run in timed.items()}


def torch_round(args) -> dict:
    """One round of PyTorch's medians, in a process of its own: PoCL's worker threads, still
    spinning after clnet's kernels, slow PyTorch's threads in the same process by up to 30%."""
    found = subprocess.run([sys.executable, __file__, "--torch-only", "--repeats", str(args.repeats), "--batch",
                            str(args.batch), "--activation", args.activation], capture_output=True, text=True,
                           check=True)
    return json.loads(found.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--activation", default="gelu", choices=sorted(APPROXIMATE))
    parser.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count())
    if args.torch_only:
        timed = torch_runs(args.batch, args.activation)
        for run in timed.values():
            run()
        print(json.dumps(medians(timed, args.repeats)))
        return
    with clnet.Context(args.device) as ctx:
        timed = clnet_runs(ctx, args.batch, args.activation)
        for run in timed.values():
            run()  # builds, records, warms up
        found: dict[str, list[float]] = {}
        for _ in range(args.rounds):  # alternating, so that both see the machine's slow and fast spells
            for kind, seconds in {**medians(timed, args.repeats), **torch_round(args)}.items():
                found.setdefault(kind, []).append(seconds)
        times = {kind: statistics.median(t) / (STEPS if "train" in kind else TOKENS) for kind, t in found.items()}
        info = common.machine(ctx)
    tokens = args.batch * CONTEXT
    print(f"\nGPT {LAYERS} layers, {HEADS} heads, {DIM} dimensions, context {CONTEXT}, vocabulary {VOCAB}, float32, "
          f"{args.activation}; clnet on {info['device']['name']}, PyTorch on {os.cpu_count()} threads of "
          f"{info['cpu']} in a process of its own\n")
    print(common.table(["", "clnet", "torch", "ratio"], [
        [f"training step (batch {args.batch}), ms", times["clnet train"] * 1e3, times["torch train"] * 1e3,
         times["clnet train"] / times["torch train"]],
        ["training tokens/s", tokens / times["clnet train"], tokens / times["torch train"],
         times["clnet train"] / times["torch train"]],
        ["generation, ms per token", times["clnet token"] * 1e3, times["torch token"] * 1e3,
         times["clnet token"] / times["torch token"]]]))
    path = common.write_json(f"gpt_{args.activation}", {"times": times, "rounds": found, "batch": args.batch,
                                                         "machine": info})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
