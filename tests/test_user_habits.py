"""What Keras, PyTorch and scikit-learn users reach for first (issue 23): 1-D and integer targets
read as they mean them, the default cost, cost aliases, evaluate, predict for regression,
predict_proba, weights as numpy, summary, validation_split and verbose; each against an
independent reference (scikit-learn's metrics, PyTorch, numpy written out here)."""

import logging

import numpy as np
import pytest

import clnet


def regression_data(rows=40, features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    return x, x @ rng.normal(size=features) + 0.1 * rng.normal(size=rows)


def regressor(ctx, features=5, seed=3, dtype=np.float64):
    return clnet.InferenceNetwork(ctx, features, [clnet.FullyConnected(8, "tanh"), clnet.FullyConnected(1)],
                                  dtype=dtype, seed=seed)


def classifier(ctx, features=5, classes=3, seed=3, output="softmax"):
    return clnet.InferenceNetwork(ctx, features, [clnet.FullyConnected(8, "tanh"),
                                                  clnet.FullyConnected(classes, output)], dtype=np.float64, seed=seed)


def weights(net):
    return [a.copy() for a in net.get_weights()]


def train(net, x, y, **options):
    return net.fit(x, y, epochs=3, batch_size=8, optimizer=clnet.SGD(0.05), seed=1, progress=False, **options)


def test_a_1d_float_target_of_a_one_output_network_is_a_column(ctx):
    x, y = regression_data()
    a, b = regressor(ctx), regressor(ctx)
    assert train(a, x, y) == train(b, x, y.reshape(-1, 1))
    for p, q in zip(weights(a), weights(b)):
        np.testing.assert_array_equal(p, q)


def test_integer_targets_of_a_regression_are_values(ctx):
    x, y = regression_data()
    whole = np.round(y * 3).astype(np.int64)
    a, b = regressor(ctx), regressor(ctx)
    assert train(a, x, whole) == train(b, x, whole.astype(np.float64))
    assert a.evaluate(x, whole)["mse"] == pytest.approx(b.evaluate(x, whole.astype(float))["mse"], rel=1e-12)


def test_ambiguous_integer_targets_name_both_readings(ctx):
    x, _ = regression_data()
    net = clnet.InferenceNetwork(ctx, 5, [clnet.FullyConnected(3, "tanh")], dtype=np.float64)
    with pytest.raises(ValueError, match=r"as class labels they need a softmax output layer or cost='cross_entropy'; "
                                         r"as values they need shape \(40, 3\)"):
        train(net, x, np.arange(40) % 3)


def test_1d_float_class_labels_get_a_hint(ctx):
    x, _ = regression_data()
    with pytest.raises(ValueError, match=r"pass \(40, 3\) targets.*whole numbers.*y.astype\(int\)"):
        train(classifier(ctx), x, (np.arange(40) % 3).astype(float))


def test_the_default_cost_follows_the_output_layer_and_says_so(ctx, caplog):
    x, _ = regression_data()
    labels = np.arange(40) % 3
    a, b = classifier(ctx), classifier(ctx)
    with caplog.at_level(logging.INFO, logger="clnet"):
        chosen = train(a, x, labels)
    assert "fit: cost cross_entropy (the output layer is softmax" in caplog.text
    assert chosen == train(b, x, labels, cost="cross_entropy")
    x, y = regression_data()
    a, b = regressor(ctx), regressor(ctx)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clnet"):
        assert train(a, x, y) == train(b, x, y, cost="quadratic")
    assert "fit: cost quadratic (the output layer is linear" in caplog.text
    binary = classifier(ctx, classes=1, output="sigmoid")
    with caplog.at_level(logging.INFO, logger="clnet"):
        train(binary, x, (y > 0).astype(int))
    assert "fit: cost cross_entropy (a sigmoid output layer with class labels" in caplog.text


@pytest.mark.parametrize("alias, name", [("mean_squared_error", "mse"), ("mean_absolute_error", "mae"), ("l1", "mae"),
                                         ("huber_loss", "huber"), ("smooth_l1", "huber"), ("bce", "cross_entropy"),
                                         ("binary_cross_entropy", "cross_entropy"),
                                         ("categorical_cross_entropy", "cross_entropy")])
def test_cost_aliases_train_as_the_cost_they_name(ctx, alias, name):
    x, y = regression_data()
    if name in ("mse", "mae", "huber"):
        make, target = regressor, y
    elif alias == "categorical_cross_entropy":
        make, target = classifier, np.arange(40) % 3
    else:
        make, target = (lambda c: classifier(c, classes=1, output="sigmoid")), (y > 0).astype(int)
    a, b = make(ctx), make(ctx)
    assert train(a, x, target, cost=alias) == train(b, x, target, cost=name)


@pytest.mark.parametrize("cost, loss", [("mae", "L1Loss"), ("huber", "HuberLoss"), ("mse", "MSELoss")])
def test_mae_and_huber_step_as_pytorchs_losses(ctx, cost, loss):
    """Two full-batch SGD steps from the same weights: the costs and the weights equal PyTorch's
    with its loss (mean reduction; HuberLoss' delta 1), gradients included."""
    torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
    x, y = regression_data(features=4)
    targets = np.column_stack([y, 2 * y])  # errors beyond huber's 1 and within it
    net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(6, "tanh"), clnet.FullyConnected(2)],
                                 dtype=np.float64, seed=5)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).double()
    with torch.no_grad():
        for layer, (w, b) in zip((model[0], model[2]), zip(*[iter(net.get_weights())] * 2)):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
    optimizer, criterion = torch.optim.SGD(model.parameters(), lr=0.1), getattr(torch.nn, loss)()
    expected = []
    for _ in range(2):
        optimizer.zero_grad()
        value = criterion(model(torch.from_numpy(x)), torch.from_numpy(targets))
        value.backward()
        optimizer.step()
        expected.append(value.item())
    history = net.fit(x, targets, cost, epochs=2, batch_size=40, optimizer=clnet.SGD(0.1), shuffle=False,
                      progress=False)
    np.testing.assert_allclose(list(history), expected, rtol=1e-12)
    theirs = [p.detach().numpy() for p in model.parameters()]
    for ours, their in zip(net.get_weights(), theirs):
        np.testing.assert_allclose(ours, their, rtol=1e-10, atol=1e-12)


def test_mse_is_the_mean_over_every_element(ctx):
    x, y = regression_data()
    net = clnet.InferenceNetwork(ctx, 5, [clnet.FullyConnected(2)], dtype=np.float64, seed=2)
    targets = np.column_stack([y, -y])
    before = net(x).get()
    history = net.fit(x, targets, "mse", epochs=1, batch_size=40, optimizer=clnet.SGD(0.01), progress=False)
    assert history[0] == pytest.approx(np.mean((before - targets) ** 2), rel=1e-12)  # Keras' mse, PyTorch's MSELoss
    after = net(x).get()  # one step of the whole batch: the cost before it is history[0]
    assert net.evaluate(x, targets, "mse")["cost"] == pytest.approx(np.mean((after - targets) ** 2), rel=1e-12)


def test_evaluate_agrees_with_scikit_learns_metrics(ctx):
    metrics = pytest.importorskip("sklearn.metrics")
    x, y = regression_data()
    net = regressor(ctx)
    train(net, x, y)
    found, predicted = net.evaluate(x, y), net.predict(x)
    assert predicted.shape == (40,)
    np.testing.assert_allclose(predicted, net(x).get()[:, 0], rtol=0, atol=0)
    assert found["mse"] == pytest.approx(metrics.mean_squared_error(y, predicted), rel=1e-12)
    assert found["mae"] == pytest.approx(metrics.mean_absolute_error(y, predicted), rel=1e-12)
    assert found["r2"] == pytest.approx(metrics.r2_score(y, predicted), rel=1e-12)
    assert found["cost"] == pytest.approx(found["mse"] / 2, rel=1e-12)  # the quadratic cost
    labels = np.arange(40) % 3
    net = classifier(ctx)
    train(net, x, labels)
    found, proba = net.evaluate(x, labels), net.predict_proba(x)
    assert found["accuracy"] == pytest.approx(metrics.accuracy_score(labels, net.predict(x)))
    assert found["cost"] == pytest.approx(metrics.log_loss(labels, proba), rel=1e-9)


def test_predict_proba_and_accuracy_are_for_classifiers(ctx):
    x, y = regression_data()
    binary = classifier(ctx, classes=1, output="sigmoid")
    p = binary(x).get()[:, 0]
    np.testing.assert_array_equal(binary.predict_proba(x), np.column_stack([1 - p, p]))
    np.testing.assert_array_equal(binary.predict(x), (p > 0.5).astype(int))
    soft = classifier(ctx)
    np.testing.assert_allclose(soft.predict_proba(x).sum(axis=1), 1, rtol=1e-12)
    with pytest.raises(ValueError, match="predict_proba is for classifiers.*output is linear"):
        regressor(ctx).predict_proba(x)
    with pytest.raises(ValueError, match=r"accuracy is for classifiers.*evaluate\(x, y\)"):
        regressor(ctx).accuracy(x, np.zeros(40, int))


def test_weights_as_numpy_in_pytorchs_layout(ctx):
    torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    net = regressor(ctx)
    net.set_weights([p.detach().numpy() for p in model.parameters()])
    x, _ = regression_data()
    np.testing.assert_allclose(net.predict(x), model(torch.from_numpy(x)).detach().numpy()[:, 0], rtol=1e-12)
    state = net.state_dict()
    assert list(state) == ["layer_0.weights", "layer_0.bias", "layer_1.weights", "layer_1.bias"]
    np.testing.assert_array_equal(state["layer_0.weights"], model[0].weight.detach().numpy())
    other = regressor(ctx, seed=9)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.predict(x), net.predict(x))
    with pytest.raises(ValueError, match=r"set_weights needs 4 arrays \(layer_0.weights, .*got 3"):
        net.set_weights(net.get_weights()[:3])


def test_summary_counts_every_parameter(ctx):
    torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
    net = clnet.InferenceNetwork(ctx, (1, 8, 8), [clnet.Conv2d(4, 3, activation="relu"), clnet.BatchNorm(),
                                                  clnet.Flatten(), clnet.FullyConnected(10, "softmax")])
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 10))
    shown = []
    text = net.summary(print_fn=shown.append)
    assert shown == [text] and "(None, 4, 6, 6)" in text and "(None, 10)" in text
    trainable = sum(p.numel() for p in model.parameters())
    state = sum(b.numel() for name, b in model.named_buffers() if "running" in name)
    assert f"parameters: {trainable + state:,} ({trainable:,} trainable, {state:,} state)" in text


def test_validation_split_holds_out_the_last_rows(ctx, capsys):
    x, y = regression_data()
    a, b = regressor(ctx), regressor(ctx)
    split = train(a, x, y, validation_split=0.25)
    held = train(b, x[:30], y[:30], validation=(x[30:], y[30:]))
    assert split == held and split.validation_cost == held.validation_cost and len(split.validation_cost) == 3
    with pytest.raises(ValueError, match="validation_split must be a fraction between 0 and 1, got 1.5"):
        train(a, x, y, validation_split=1.5)
    with pytest.raises(ValueError, match="validation_split holds out part of x and y"):
        train(a, x, y, validation_split=0.1, validation=(x, y))
    capsys.readouterr()
    a.fit(x, y, epochs=2, optimizer=clnet.SGD(0.01), verbose=0)
    assert "%|" not in capsys.readouterr().err  # verbose=0: no progress bar (tqdm's "fit: 100%|...")


def test_pytorch_init_has_pytorchs_default_range(ctx):
    torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
    linear = torch.nn.Linear(300, 200)  # reset_parameters: kaiming_uniform(a=sqrt(5)) and its bias rule
    net = clnet.InferenceNetwork(ctx, 300, [clnet.FullyConnected(200)], dtype=np.float64, init="pytorch", seed=4)
    for ours, theirs in ((net.layers[0].weights.get(), linear.weight), (net.layers[0].bias.get(), linear.bias)):
        theirs = theirs.detach().numpy()
        assert np.abs(ours).max() <= 1 / np.sqrt(300) and np.abs(theirs).max() <= 1 / np.sqrt(300) + 1e-7
        assert np.abs(ours).max() > 0.98 / np.sqrt(300) and np.abs(theirs).max() > 0.9 / np.sqrt(300)
        assert ours.std() == pytest.approx(theirs.std(), rel=0.15)  # both 1 / sqrt(3 * 300)


def test_evaluate_and_to_onnx_refuse_bad_input_by_name(ctx, tmp_path):
    pytest.importorskip("onnx")
    x, y = regression_data()
    net = regressor(ctx)
    with pytest.raises(ValueError, match="unknown cost 'hinge'; choose one of quadratic, mse, mae, huber, "
                                         "cross_entropy"):
        net.evaluate(x, y, "hinge")
    with pytest.raises(ValueError, match="y has 39 rows but x has 40: one target per sample"):
        net.evaluate(x, y[:39])
    with pytest.raises(IsADirectoryError, match=r"is a folder; save to a file in it, such as .*network\.onnx"):
        net.to_onnx(tmp_path)
    assert net.to_onnx(tmp_path / "model").name == "model.onnx"  # the suffix rule of save, with .onnx


def test_a_log_softmax_classifier_trains_as_the_softmax_one_on_labels(ctx, caplog):
    """log_softmax's outputs are ln of softmax's; with labels fit picks cross-entropy (PyTorch's
    NLLLoss after LogSoftmax), whose gradients are softmax's: the same weights, step for step."""
    rng = np.random.default_rng(4)
    x, labels = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    soft, log = classifier(ctx), classifier(ctx, output="log_softmax")
    with caplog.at_level(logging.INFO, logger="clnet"):
        costs_log = train(log, x, labels)
    assert "cost cross_entropy (the output layer is log_softmax;" in caplog.text
    np.testing.assert_allclose(costs_log, train(soft, x, labels), rtol=1e-12)
    for p, q in zip(weights(log), weights(soft)):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(log.outputs_of(x), np.log(soft.outputs_of(x)), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(log.predict_proba(x), soft.predict_proba(x), rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(log.predict(x), soft.predict(x))
    assert log.evaluate(x, labels) == pytest.approx(soft.evaluate(x, labels), rel=1e-10)
