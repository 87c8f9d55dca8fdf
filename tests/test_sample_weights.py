"""Weights of samples and the table of costs (issue 35): every cost of the table, weighted, against
numpy's row by row; a weighted fit against PyTorch's weighted loss trained the same way; class
weights; KL divergence against torch.nn.KLDivLoss; what is refused."""

import numpy as np
import pyopencl.array as cla
import pytest
import torch

import clnet
from clnet.ops import cost_table, costs

from . import reference as ref

OUTPUTS = {"quadratic": "sigmoid", "mse": "linear", "mae": "tanh", "huber": "linear", "cross_entropy": "softmax",
           "kl_divergence": "log_softmax"}  # one accepted output layer of each cost


def _case(cost, activation, rng, rows=13, cols=4):
    z = rng.normal(scale=2, size=(rows, cols))
    if cost_table.find(cost).from_logits and activation in ("softmax", "log_softmax"):
        y = rng.dirichlet(np.ones(cols) * 0.7, size=rows)
        y[0] = np.eye(cols)[1]  # a one-hot row: 0 ln 0 = 0 for the divergence
    else:
        y = rng.uniform(-2 if cost in ("mae", "huber") else 0, 2 if cost in ("mae", "huber") else 1, (rows, cols))
    return z, ref.apply(activation, z), y


@pytest.mark.parametrize("cost", clnet.COSTS)
def test_every_cost_weighted_equals_the_weighted_mean_of_its_rows(ctx, cost):
    assert set(OUTPUTS) == set(clnet.COSTS)  # a new cost is listed here with an output it accepts
    activation = OUTPUTS[cost]
    rng = np.random.default_rng(len(cost))
    z, a, y = _case(cost, activation, rng)
    w = rng.uniform(0, 3, size=13)
    w[2] = 0.0
    dev = [cla.to_device(ctx.queue, np.ascontiguousarray(v)) for v in (a, z, y)]
    weights = cla.to_device(ctx.queue, w.reshape(-1, 1))
    found = costs.value(ctx, cost, activation, *dev, weights=weights)
    rows = [ref.cost(cost, a[i:i + 1], y[i:i + 1], activation) for i in range(13)]  # each row's own cost
    assert abs(found - np.dot(w, rows) / 13) < 1e-12 * max(1, abs(found))
    plain, weighted = (cla.empty(ctx.queue, a.shape, np.float64) for _ in range(2))
    costs.output_delta(ctx, cost, dev[0], dev[2], plain, activation)
    out = cla.empty(ctx.queue, 1, np.float64)
    costs.value_into(ctx, cost, activation, *dev, out, delta=weighted, weights=weights)
    np.testing.assert_allclose(weighted.get(), plain.get() * w[:, None], rtol=1e-13, atol=1e-16)
    assert abs(out.get()[0] - found) < 1e-14 * max(1, abs(found))


@pytest.mark.parametrize("activation", ["softmax", "log_softmax", "linear", "sigmoid"])
def test_kl_divergence_equals_pytorch(ctx, activation):
    rng = np.random.default_rng(4)
    cols = 1 if activation == "sigmoid" else 5
    z = rng.normal(scale=2, size=(9, cols))
    y = rng.uniform(size=(9, 1)) if cols == 1 else rng.dirichlet(np.ones(cols), size=9)
    if cols > 1:
        y[3] = np.eye(cols)[0]
    a = z if activation == "linear" else ref.apply(activation, z)
    logits = torch.tensor(z, requires_grad=True)
    if cols == 1:  # a sigmoid's output as the two-class distribution (1 - p, p)
        log_p = torch.cat([torch.nn.functional.logsigmoid(-logits), torch.nn.functional.logsigmoid(logits)], 1)
        target = torch.tensor(np.hstack([1 - y, y]))
    else:
        log_p, target = torch.log_softmax(logits, 1), torch.tensor(y)
    loss = torch.nn.KLDivLoss(reduction="batchmean")(log_p, target)
    loss.backward()
    dev = [cla.to_device(ctx.queue, np.ascontiguousarray(v)) for v in (a, z, y)]
    assert abs(costs.value(ctx, "kl_divergence", activation, *dev) - loss.item()) < 1e-12
    delta = cla.empty(ctx.queue, z.shape, np.float64)
    costs.output_delta(ctx, "kld", dev[0], dev[2], delta, activation)  # dC/dz, the activation folded in
    np.testing.assert_allclose(delta.get(), logits.grad.numpy(), rtol=1e-10, atol=1e-14)


def _mirror(net):
    """net's dense layers as torch Linear modules (the same weights)."""
    layers = []
    for i, spec in enumerate(net.specs):
        arrays = net.host_arrays()
        linear = torch.nn.Linear(*arrays[f"layer_{i}.weights"].shape[::-1]).double()
        linear.weight.data = torch.tensor(arrays[f"layer_{i}.weights"])
        linear.bias.data = torch.tensor(arrays[f"layer_{i}.bias"])
        layers += [linear] + ([torch.nn.Tanh()] if spec.activation == "tanh" else [])
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("cost", ["cross_entropy", "mse"])
def test_a_weighted_fit_equals_pytorchs_weighted_loss(ctx, cost):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(20, 5))
    labels = rng.integers(0, 3, 20)
    y = labels if cost == "cross_entropy" else rng.normal(size=(20, 3))
    w = rng.uniform(0.1, 4, 20)
    net = clnet.InferenceNetwork(ctx, 5, [clnet.FullyConnected(6, "tanh"), clnet.FullyConnected(3, "linear")],
                                 dtype=np.float64, seed=2)
    model = _mirror(net)
    history = net.fit(x, y, cost, epochs=3, batch_size=8, optimizer=clnet.SGD(0.2, momentum=0.5), shuffle=False,
                      progress=False, sample_weight=w)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.5)
    expected = []
    for _ in range(3):
        total = 0.0
        for start in range(0, 20, 8):
            rows = slice(start, start + 8)
            out = model(torch.tensor(x[rows]))
            if cost == "cross_entropy":
                each = torch.nn.functional.cross_entropy(out, torch.tensor(labels[rows]), reduction="none")
            else:
                each = ((out - torch.tensor(y[rows])) ** 2).mean(dim=1)
            loss = (each * torch.tensor(w[rows])).sum() / out.shape[0]  # Keras' weighted mean over the batch
            total += loss.item() * out.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
        expected.append(total / 20)
    np.testing.assert_allclose(history, expected, rtol=1e-10)
    ours = [net.host_arrays()[f"layer_{i}.{n}"] for i in (0, 1) for n in ("weights", "bias")]
    theirs = [p.detach().numpy() for p in model.parameters()]
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_class_weight_is_sample_weight_by_class_and_evaluate_weighs_the_cost(ctx):
    rng = np.random.default_rng(5)
    x, labels = rng.normal(size=(24, 5)), rng.integers(0, 3, 24)
    nets = [clnet.InferenceNetwork(ctx, 5, [clnet.FullyConnected(3, "softmax")], dtype=np.float64, seed=1)
            for _ in range(2)]
    class_weight = {0: 0.5, 2: 3.0}  # class 1 left out: weighs 1
    nets[0].fit(x, labels, epochs=2, batch_size=8, seed=3, progress=False, class_weight=class_weight)
    nets[1].fit(x, labels, epochs=2, batch_size=8, seed=3, progress=False,
                sample_weight=np.array([0.5, 1.0, 3.0])[labels])
    for a, b in zip(*(n.get_weights() for n in nets)):
        np.testing.assert_array_equal(a, b)
    one_hot = np.eye(3)[labels]  # one-hot targets name the same classes
    figures = nets[0].evaluate(x, one_hot, class_weight=[0.5, 1.0, 3.0])
    p = nets[0].predict_proba(x)
    each = -np.log(p[np.arange(24), labels])
    assert abs(figures["cost"] - np.dot(np.array([0.5, 1.0, 3.0])[labels], each) / 24) < 1e-12
    assert figures["accuracy"] == np.mean(p.argmax(1) == labels)  # unweighted


def test_bad_weights_are_refused_with_what_is_allowed(ctx):
    rng = np.random.default_rng(6)
    x, labels = rng.normal(size=(10, 5)), rng.integers(0, 3, 10)
    net = clnet.InferenceNetwork(ctx, 5, [clnet.FullyConnected(3, "softmax")])
    with pytest.raises(ValueError, match=r"sample_weight must hold finite numbers >= 0, got -1.0 at \(4,\)"):
        net.fit(x, labels, progress=False, sample_weight=np.where(np.arange(10) == 4, -1.0, 1.0))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(10,\) \(one weight per sample\), got \(9,"):
        net.fit(x, labels, progress=False, sample_weight=np.ones(9))
    with pytest.raises(ValueError, match=r"class_weight's classes must be whole numbers in 0..2, got 3"):
        net.fit(x, labels, progress=False, class_weight={3: 2.0})
    with pytest.raises(ValueError, match="class_weight needs class-label targets"):
        clnet.InferenceNetwork(ctx, 5, [clnet.FullyConnected(2, "linear")]).fit(
            x, rng.normal(size=(10, 2)), "mse", progress=False, class_weight={0: 2.0})
    with pytest.raises(ValueError, match="kl_divergence cost needs a sigmoid, softmax or log_softmax output layer"):
        clnet.InferenceNetwork(ctx, 5, [clnet.FullyConnected(2, "tanh")]).fit(x, labels % 2, "kl", progress=False)


@pytest.mark.parametrize("per_position", [False, True])
def test_weights_of_labels_per_position(ctx, per_position):
    rng = np.random.default_rng(9)
    z = rng.normal(size=(3, 4, 5))  # (batch, seq, classes) logits
    labels = rng.integers(0, 5, (3, 4))
    w = rng.uniform(0, 2, (3, 4) if per_position else (3, 1))
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    each = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]  # (3, 4)
    expected = (each * w).sum() / 12  # the mean over every position, each weighed
    dz, dy, dw = (cla.to_device(ctx.queue, np.ascontiguousarray(v, np.float64)) for v in (z, labels, w))
    delta = cla.empty(ctx.queue, z.shape, np.float64)
    out = cla.empty(ctx.queue, 1, np.float64)
    costs.value_into(ctx, "cross_entropy", "linear", dz, dz, dy, out, delta=delta, weights=dw)
    assert abs(out.get()[0] - expected) < 1e-12
    p = np.exp(log_p)
    p[np.arange(3)[:, None], np.arange(4), labels] -= 1
    np.testing.assert_allclose(delta.get(), p / 12 * w[..., None], rtol=1e-12, atol=1e-15)
