"""Sequence models (issue 31): token ids, Embedding, MultiHeadAttention (causal and not, odd
lengths and head sizes), a pre-LayerNorm transformer block and a whole GPT against the same model
written with torch.nn's modules: forward, dC/dx and every gradient in float64 to 1e-10, three
AdamW steps to 1e-9; attention dropout by finite differences; the errors of bad ids."""

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.nn import Step

from .layer_check import tolerance, train_half

torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")


def attention_module(spec, dim, arrays, prefix=""):
    """torch.nn.MultiheadAttention with the clnet layer's arrays (the same names and layouts)."""
    module = torch.nn.MultiheadAttention(dim, spec.heads, batch_first=True, dropout=0.0).double()
    with torch.no_grad():
        module.in_proj_weight.copy_(torch.tensor(arrays[prefix + "in_proj_weight"]))
        module.in_proj_bias.copy_(torch.tensor(arrays[prefix + "in_proj_bias"]))
        module.out_proj.weight.copy_(torch.tensor(arrays[prefix + "out_proj_weight"]))
        module.out_proj.bias.copy_(torch.tensor(arrays[prefix + "out_proj_bias"]))
    return module


def causal_mask(seq):
    return torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1)


def randomize(net, rng, scale=1.0):
    net.set_arrays({name: rng.normal(scale=scale, size=a.shape) for name, a in net.host_arrays().items()})


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("seq", "dim", "heads"), [(7, 15, 3), (5, 8, 1), (9, 12, 4), (7, 64, 2), (6, 32, 2)])
def test_attention_equals_pytorchs(ctx, causal, seq, dim, heads):
    """Head sizes 5 and 3 (no multiple of any vector width), 8, 32 and 16 (one, four and two
    vectors a work-item), sequence lengths no multiple of the kernels' tiles."""
    spec = clnet.MultiHeadAttention(heads, causal=causal)
    net = clnet.InferenceNetwork(ctx, (seq, dim), [spec], dtype=np.float64)
    rng = np.random.default_rng(seq)
    randomize(net, rng, 0.5)
    module = attention_module(spec, dim, net.host_arrays(), "layer_0.")
    x = rng.normal(size=(3, seq, dim))
    trainer = train_half(ctx, net, cla.to_device(ctx.queue, x))
    trainer.forward(Step())
    xt = torch.tensor(x, requires_grad=True)
    expected = module(xt, xt, xt, attn_mask=causal_mask(seq) if causal else None, need_weights=False)[0]
    g = rng.normal(size=expected.shape)
    expected.backward(torch.tensor(g))
    trainer.delta.set(g)
    trainer.backward()
    tol = tolerance(np.float64)
    np.testing.assert_allclose(trainer.out.get(), expected.detach().numpy(), **tol)
    np.testing.assert_allclose(trainer.grad_x.get(), xt.grad.numpy(), **tol)
    grads = dict(zip(["in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias"],
                     (v.get() for v in net.gradient_buffer.views)))
    for name, tensor in (("in_proj_weight", module.in_proj_weight), ("in_proj_bias", module.in_proj_bias),
                         ("out_proj_weight", module.out_proj.weight), ("out_proj_bias", module.out_proj.bias)):
        np.testing.assert_allclose(grads[name], tensor.grad.numpy(), **tol, err_msg=name)
    np.testing.assert_allclose(net(x).get(), expected.detach().numpy(), **tol)  # the inference half


def test_causal_attention_ignores_later_positions(ctx):
    net = clnet.InferenceNetwork(ctx, (6, 8), [clnet.MultiHeadAttention(2, causal=True)], dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(2, 6, 8))
    changed = x.copy()
    changed[:, 4:] += 1.0
    before, after = net(x).get(), net(changed).get()
    np.testing.assert_array_equal(before[:, :4], after[:, :4])
    assert not np.allclose(before[:, 4:], after[:, 4:])


def test_attention_dropout_drops_weights_and_backpropagates_through_its_mask(ctx):
    """In training the dropped attention changes the output; the mask is a function of the step,
    so the gradient is checked by finite differences of C = sum(out * g) with the same mask."""
    net = clnet.InferenceNetwork(ctx, (5, 6), [clnet.MultiHeadAttention(2, causal=True, dropout=0.3)],
                                 dtype=np.float64)
    rng = np.random.default_rng(3)
    randomize(net, rng, 0.5)
    x = rng.normal(size=(2, 5, 6))
    training = clnet.TrainingNetwork(net, x)
    training.dropout_key, training.step = 11, 4
    dropped = training.forward().get()
    assert not np.allclose(dropped, training.forward(drop=False).get())
    np.testing.assert_allclose(training.forward(drop=False).get(), net(x).get(), rtol=1e-12)
    g = rng.normal(size=dropped.shape)

    def cost():
        return float((training.forward().get() * g).sum())

    training.forward()
    training.output_gradient.set(g)
    training.backward()
    analytic = net.gradient_buffer.views[0].get()  # in_proj_weight
    weights = net.parameter_buffer.views[0]
    w = weights.get()
    for index in [(0, 0), (4, 3), (9, 5), (15, 2)]:
        step = np.zeros_like(w)
        step[index] = 1e-6
        weights.set(w + step)
        up = cost()
        weights.set(w - step)
        down = cost()
        weights.set(w)
        assert (up - down) / 2e-6 == pytest.approx(analytic[index], rel=1e-6, abs=1e-9)


def test_embedding_equals_pytorchs_and_sums_repeated_ids(ctx):
    net = clnet.InferenceNetwork(ctx, 6, [clnet.Embedding(5, 3), clnet.FullyConnected(2)], dtype=np.float64)
    arrays = net.host_arrays()
    ids = np.array([[0, 1, 1, 4, 1, 0], [4, 4, 2, 2, 2, 1]])
    emb = torch.nn.Embedding(5, 3).double()
    linear = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(arrays["layer_0.weight"]))
        linear.weight.copy_(torch.tensor(arrays["layer_1.weights"]))
        linear.bias.copy_(torch.tensor(arrays["layer_1.bias"]))
    expected = linear(emb(torch.tensor(ids)))
    np.testing.assert_allclose(net(ids).get(), expected.detach().numpy(), rtol=1e-12)
    training = clnet.TrainingNetwork(net, ids)
    training.forward()
    g = np.random.default_rng(0).normal(size=expected.shape)
    training.output_gradient.set(g)
    training.backward()
    expected.backward(torch.tensor(g))
    np.testing.assert_allclose(net.gradient_buffer.views[0].get(), emb.weight.grad.numpy(), rtol=1e-12, atol=1e-14)
    # N(0, 1) initialization whatever the init method, as PyTorch's
    big = clnet.InferenceNetwork(ctx, 4, [clnet.Embedding(1000, 64)], init="xavier", dtype=np.float64)
    table = big.host_arrays()["layer_0.weight"]
    assert abs(table.mean()) < 0.01 and abs(table.std() - 1) < 0.01


class TorchGPT(torch.nn.Module):
    """A GPT written with torch.nn's modules: the independent reference of clnet.nn.gpt."""

    def __init__(self, vocab, seq, dim, heads, layers):
        super().__init__()
        self.emb, self.pos = torch.nn.Embedding(vocab, dim), torch.nn.Parameter(torch.zeros(seq, dim))
        self.blocks = torch.nn.ModuleList(torch.nn.ModuleList([
            torch.nn.LayerNorm(dim), torch.nn.MultiheadAttention(dim, heads, batch_first=True),
            torch.nn.LayerNorm(dim), torch.nn.Linear(dim, 4 * dim), torch.nn.Linear(4 * dim, dim)])
            for _ in range(layers))
        self.ln, self.head = torch.nn.LayerNorm(dim), torch.nn.Linear(dim, vocab)
        self.mask = causal_mask(seq)

    def forward(self, ids):
        x = self.emb(ids) + self.pos
        for ln1, attention, ln2, fc1, fc2 in self.blocks:
            h = ln1(x)
            x = x + attention(h, h, h, attn_mask=self.mask, need_weights=False)[0]
            x = x + fc2(torch.nn.functional.gelu(fc1(ln2(x))))
        return self.head(self.ln(x))

    def named(self, layers):
        """clnet's array names -> this model's tensors."""
        found = {"layer_0.weight": self.emb.weight, "layer_1.weight": self.pos,
                 f"layer_{2 + 2 * layers}.scale": self.ln.weight, f"layer_{2 + 2 * layers}.shift": self.ln.bias,
                 f"layer_{3 + 2 * layers}.weights": self.head.weight, f"layer_{3 + 2 * layers}.bias": self.head.bias}
        for i, (ln1, attention, ln2, fc1, fc2) in enumerate(self.blocks):
            a, m = f"layer_{2 + 2 * i}.body.", f"layer_{3 + 2 * i}.body."
            found.update({a + "0.scale": ln1.weight, a + "0.shift": ln1.bias,
                          a + "1.in_proj_weight": attention.in_proj_weight,
                          a + "1.in_proj_bias": attention.in_proj_bias,
                          a + "1.out_proj_weight": attention.out_proj.weight,
                          a + "1.out_proj_bias": attention.out_proj.bias,
                          m + "0.scale": ln2.weight, m + "0.shift": ln2.bias, m + "1.weights": fc1.weight,
                          m + "1.bias": fc1.bias, m + "2.weights": fc2.weight, m + "2.bias": fc2.bias})
        return found


def torch_gpt(net, vocab, seq, dim, heads, layers):
    model = TorchGPT(vocab, seq, dim, heads, layers).double()
    arrays = net.host_arrays()
    with torch.no_grad():
        for name, tensor in model.named(layers).items():
            tensor.copy_(torch.tensor(arrays[name]))
    return model


def test_a_gpt_forward_and_gradients_equal_pytorchs(ctx):
    vocab, seq, dim, heads, layers = 13, 7, 12, 3, 2
    net = clnet.InferenceNetwork(ctx, seq, clnet.nn.gpt(vocab, seq, dim, heads, layers), dtype=np.float64, seed=2)
    rng = np.random.default_rng(4)
    randomize(net, rng, 0.3)
    model = torch_gpt(net, vocab, seq, dim, heads, layers)
    ids, labels = rng.integers(0, vocab, (4, seq)), rng.integers(0, vocab, (4, seq))
    logits = model(torch.tensor(ids))
    np.testing.assert_allclose(net(ids).get(), logits.detach().numpy(), rtol=1e-10, atol=1e-11)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), torch.tensor(labels).reshape(-1))
    loss.backward()
    assert net.evaluate(ids, labels)["cost"] == pytest.approx(loss.item(), rel=1e-12)
    training = net.training_network(4)
    training.x.set(ids.astype(np.float64))
    output = training.forward()
    y = cla.to_device(ctx.queue, labels.astype(np.float64))
    cost = cla.empty(ctx.queue, 1, np.float64)
    clnet.ops.costs.value_into(ctx, "cross_entropy", "linear", output, training.logits, y, cost,
                               delta=training.output_gradient)
    training.backward(skip_output_derivative=True)
    assert cost.get()[0] == pytest.approx(loss.item(), rel=1e-12)
    found = dict(zip(net._names(trainable=True), net.gradient_buffer.get()))
    for name, tensor in model.named(layers).items():
        np.testing.assert_allclose(found[name], tensor.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("optimizer", ["AdamW", "Adam"])
def test_three_steps_of_a_gpt_equal_pytorchs(ctx, optimizer):
    vocab, seq, dim, heads, layers = 11, 6, 8, 2, 2
    net = clnet.InferenceNetwork(ctx, seq, clnet.nn.gpt(vocab, seq, dim, heads, layers), dtype=np.float64, seed=5)
    rng = np.random.default_rng(7)
    # no bias at zero: the keys' bias has a gradient of 0 (softmax ignores a shift), rounding noise
    # of 1e-18 that Adam's decay would grow from a zero bias into steps of any sign
    randomize(net, rng, 0.3)
    model = torch_gpt(net, vocab, seq, dim, heads, layers)
    ids, labels = rng.integers(0, vocab, (5, seq)), rng.integers(0, vocab, (5, seq))
    ours = clnet.AdamW(0.01, weight_decay=0.1) if optimizer == "AdamW" else clnet.Adam(0.01, weight_decay=0.1)
    history = net.fit(ids, labels, epochs=3, batch_size=5, optimizer=ours, progress=False)
    theirs = getattr(torch.optim, optimizer)(model.parameters(), lr=0.01, weight_decay=0.1)
    losses = []
    for _ in range(3):
        theirs.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.tensor(ids)).reshape(-1, vocab),
                                                 torch.tensor(labels).reshape(-1))
        loss.backward()
        theirs.step()
        losses.append(loss.item())
    np.testing.assert_allclose(history, losses, rtol=1e-9)
    arrays = net.host_arrays()
    for name, tensor in model.named(layers).items():
        np.testing.assert_allclose(arrays[name], tensor.detach().numpy(), rtol=1e-9, atol=1e-10, err_msg=name)


def test_bad_token_inputs_are_refused_clearly(ctx):
    net = clnet.InferenceNetwork(ctx, 5, clnet.nn.gpt(7, 5, 8, 2, 1))
    good = np.zeros((2, 5), dtype=np.int64)
    with pytest.raises(TypeError, match="token ids for an Embedding of 7 rows: they must be integers, got dtype "
                                        "float64"):
        net(good.astype(np.float64))
    bad = good.copy()
    bad[1, 3] = 7
    with pytest.raises(ValueError, match=r"id 7 at \(1, 3\), outside the vocabulary: ids must be in 0..6"):
        net(bad)
    bad[1, 3] = -1
    with pytest.raises(ValueError, match="id -1"):
        net.fit(bad, good, progress=False)
    with pytest.raises(ValueError, match=r"shape \(batch, 5\) \(sequences of 5 token ids\), got \(2, 4\)"):
        net.predict(good[:, :4])
    with pytest.raises(ValueError, match=r"label 9 at \(0, 2\)"):
        labels = good.copy()
        labels[0, 2] = 9
        net.fit(good, labels, progress=False)
    with pytest.raises(TypeError, match="on the device they must be an integer array"):
        net(cla.to_device(ctx.queue, good.astype(np.float32)))
    np.testing.assert_array_equal(net(cla.to_device(ctx.queue, good.astype(np.int32))).get(), net(good).get())
    with pytest.raises(ValueError, match="only a network's first layer"):
        clnet.InferenceNetwork(ctx, (5, 3), [clnet.FullyConnected(4), clnet.Embedding(7, 4)])
    with pytest.raises(ValueError, match="do not divide into 3 heads"):
        clnet.InferenceNetwork(ctx, (5, 8), [clnet.MultiHeadAttention(3)])
    with pytest.raises(ValueError, match="float64 for a larger vocabulary"):
        clnet.InferenceNetwork(ctx, 4, [clnet.Embedding(2**24 + 1, 1)])


def test_a_gpt_trains_saves_and_resumes_bit_for_bit(ctx, tmp_path):
    """The same bits from the same seed; a run stopped after 2 of 4 epochs and resumed from its
    checkpoint ends with the weights of the run that never stopped; a saved GPT loads."""
    vocab, seq = 9, 8
    text = np.tile(np.arange(vocab), 40)
    ids = np.stack([text[i:i + seq] for i in range(120)])
    following = np.stack([text[i + 1:i + seq + 1] for i in range(120)])

    def run(epochs, **kwargs):
        net = clnet.InferenceNetwork(ctx, seq, clnet.nn.gpt(vocab, seq, 16, 2, 1, dropout=0.1), seed=3)
        history = net.fit(ids, following, epochs=epochs, batch_size=16, optimizer=clnet.AdamW(3e-3), seed=1,
                          progress=False, **kwargs)
        return net, history

    net, history = run(4)
    assert history[-1] < 0.5 * history[0]
    again, _ = run(4)
    for name, value in net.host_arrays().items():
        np.testing.assert_array_equal(value, again.host_arrays()[name], err_msg=name)
    checkpoint = tmp_path / "gpt.npz"
    run(2, checkpoint=checkpoint)
    resumed, resumed_history = run(4, checkpoint=checkpoint, resume=True)
    np.testing.assert_array_equal(resumed.parameter_buffer.flat.get(), net.parameter_buffer.flat.get())
    assert list(resumed_history) == list(history)
    loaded = clnet.load(net.save(tmp_path / "saved"), ctx)
    np.testing.assert_array_equal(loaded(ids[:3]).get(), net(ids[:3]).get())
    assert net.evaluate(ids, following)["accuracy"] > 0.5


def test_generation_draws_from_the_last_positions_logits(ctx):
    """Greedy generation (temperature 0) equals the argmax of the logits at the last id of a
    window, recomputed here with the network's plain forward pass; a seed repeats a sample."""
    vocab, seq = 7, 6
    net = clnet.InferenceNetwork(ctx, seq, clnet.nn.gpt(vocab, seq, 8, 2, 1), dtype=np.float64, seed=1)
    randomize(net, np.random.default_rng(2))
    prompt = np.array([3, 1, 4])
    out = net.generate(prompt, 6, temperature=0)
    expected = list(prompt)
    for _ in range(6):
        window = np.zeros((1, seq), dtype=np.int64)
        recent = expected[-seq:]
        window[0, :len(recent)] = recent
        expected.append(int(net(window).get()[0, len(recent) - 1].argmax()))
    assert list(out) == expected
    a, b = (net.generate(prompt, 10, temperature=1.0, top_k=3, seed=5) for _ in range(2))
    assert list(a) == list(b) and len(a) == 13 and a.max() < vocab
    with pytest.raises(ValueError, match="top_k must be in 1..7"):
        net.generate(prompt, 2, top_k=8)
    with pytest.raises(ValueError, match="non-empty 1-D sequence of integer ids"):
        net.generate([0.5], 2)
    looking_ahead = clnet.InferenceNetwork(ctx, (seq,), [clnet.Embedding(vocab, 4), clnet.MultiHeadAttention(2),
                                                         clnet.FullyConnected(vocab)])
    with pytest.raises(ValueError, match="needs a causal network"):
        looking_ahead.generate(prompt, 2)


def test_the_char_gpt_example_repeats_its_bits(ctx):
    """examples/char_gpt.py, tiny: the same losses and text on a second run from the same seed."""
    from clnet.app.demo import load_example

    example = load_example("char_gpt")
    runs = [example.run(ctx, steps=4, rounds=2, batch=4, context=16, dim=16, heads=2, layers=1, progress=False,
                        sample=20) for _ in range(2)]
    assert runs[0]["losses"] == runs[1]["losses"] and runs[0]["text"] == runs[1]["text"]
    assert len(runs[0]["text"]) == 24 and runs[0]["text"].startswith("def ")
    assert all(np.isfinite(runs[0]["losses"])) and runs[0]["losses"][0] < np.log(runs[0]["vocab"]) + 1


KILLED_GPT = """
import os, signal, sys
sys.path.insert(0, sys.argv[3])
import clnet
from gpt_case import gpt_data, gpt_net

class KilledMidEpoch(clnet.AdamW):
    def step(self, params, grads, keep=None, **kwargs):
        super().step(params, grads, keep, **kwargs)
        if self.steps == 10:  # epoch 3 of 4 steps each, second step
            params.ctx.finish()
            os.kill(os.getpid(), signal.SIGKILL)

with clnet.Context(sys.argv[2]) as ctx:
    gpt_net(ctx, 1).fit(*gpt_data(), epochs=4, batch_size=8, optimizer=KilledMidEpoch(0.01), seed=3, progress=False,
                        checkpoint=sys.argv[1], resume=True)
"""


def test_a_gpt_killed_mid_epoch_resumes_to_the_weights_of_a_run_that_never_stopped(ctx, tmp_path):
    """Dropout in attention and after each branch, AdamW, token ids: SIGKILL in epoch 3, resumed."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from .conftest import TEST_DEVICE
    from .gpt_case import gpt_data, gpt_net

    path = tmp_path / "gpt.npz"
    result = subprocess.run([sys.executable, "-c", KILLED_GPT, str(path), TEST_DEVICE, str(Path(__file__).parent)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr
    resumed = gpt_net(ctx, 1)
    history = resumed.fit(*gpt_data(), epochs=4, batch_size=8, optimizer=clnet.AdamW(0.01), seed=3, progress=False,
                          checkpoint=path, resume=True)
    whole = gpt_net(ctx, 1)
    expected = whole.fit(*gpt_data(), epochs=4, batch_size=8, optimizer=clnet.AdamW(0.01), seed=3, progress=False)
    assert list(history) == list(expected)
    np.testing.assert_array_equal(resumed.parameter_buffer.flat.get(), whole.parameter_buffer.flat.get())


def test_bad_sequence_layers_costs_and_generation_arguments_are_refused_clearly(ctx):
    for make, message in [(lambda: clnet.Embedding(0, 4), r"vocab must be a positive whole number, got 0"),
                          (lambda: clnet.Embedding(5, 2.5), r"dim must be a positive whole number, got 2.5"),
                          (lambda: clnet.MultiHeadAttention(0), r"a positive whole number of heads, got 0"),
                          (lambda: clnet.MultiHeadAttention(2, dropout=1.0), r"dropout must be a probability")]:
        with pytest.raises(ValueError, match=message):
            make()
    with pytest.raises(ValueError, match=r"PositionalEmbedding takes \(batch, seq, features\) inputs, got samples of "
                                         r"shape \(6,\)"):
        clnet.InferenceNetwork(ctx, 6, [clnet.PositionalEmbedding()])
    with pytest.raises(ValueError, match=r"SequenceMean takes \(batch, seq, features\) inputs"):
        clnet.InferenceNetwork(ctx, (2, 3, 4), [clnet.SequenceMean()])
    with pytest.raises(ValueError, match=r"MultiHeadAttention takes \(batch, seq, features\) inputs"):
        clnet.InferenceNetwork(ctx, 8, [clnet.MultiHeadAttention(2)])
    net = clnet.InferenceNetwork(ctx, 5, clnet.nn.gpt(7, 5, 8, 2, 1))
    ids = np.zeros((2, 5), dtype=np.int64)
    with pytest.raises(ValueError, match=r"class labels per position .* need cost='cross_entropy' on a linear output "
                                         r"layer \(logits\), got 'mse'"):
        net.fit(ids, ids, "mse", progress=False)
    with pytest.raises(ValueError, match="temperature must be >= 0, got -1"):
        net.generate([1, 2], 3, temperature=-1)
    with pytest.raises(ValueError, match="count must be a whole number >= 0, got -2"):
        net.generate([1, 2], -2)
    with pytest.raises(ValueError, match="generate needs a network of token ids"):
        clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(3)]).generate([1], 2)
