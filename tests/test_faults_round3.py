"""What the third fault trial found (issue 33), each against what a careful user expects:
evaluate racing fit, divergence and batch norm's statistics, caches, scratch buffers, bad files.
(MPI ranks that end outside fit: tests/test_distributed.py.)"""

import sys
import threading

import numpy as np
import pytest

import clnet


def classes_data(samples=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, samples)
    return rng.normal(size=(samples, 6)) + np.eye(3, 6)[labels] * 2, labels


def mlp(ctx, seed=2):
    return clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(8, "tanh"), clnet.FullyConnected(3, "softmax")],
                                  dtype=np.float64, seed=seed)


@pytest.fixture
def switching_often():
    """Threads switch every microsecond (Python's default is 5 ms), as the trial ran them."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(saved)


# -- evaluate and fit on one network ---------------------------------------------------------------

def test_evaluate_while_fit_runs_waits_and_leaves_the_training_as_it_would_be(ctx, switching_often):
    """evaluate of 32 rows borrows the training network of 32 rows, fit's own buffers at batch 32:
    it waits for fit instead (on the old code the weights differed in every trial)."""
    x, labels = classes_data()

    def fit(net):
        net.fit(x, labels, "cross_entropy", epochs=6, batch_size=32, optimizer=clnet.SGD(0.1), seed=3,
                progress=False)

    alone = mlp(ctx)
    fit(alone)
    shared = mlp(ctx)
    trainer = threading.Thread(target=fit, args=(shared,))
    found = []
    trainer.start()
    while trainer.is_alive():
        found.append(shared.evaluate(x[:32], labels[:32]))
    trainer.join()
    for name, value in alone.host_arrays().items():
        np.testing.assert_array_equal(shared.host_arrays()[name], value, err_msg=name)
    assert found[-1] == alone.evaluate(x[:32], labels[:32])


def test_threads_evaluating_one_network_each_get_its_figures(ctx, switching_often):
    """Four threads evaluating one network at once (the old code: wrong accuracies in 49 of 50)."""
    x, labels = classes_data()
    net = mlp(ctx)
    net.fit(x, labels, "cross_entropy", epochs=3, batch_size=16, seed=1, progress=False)
    parts = [(x[i::4], labels[i::4]) for i in range(4)]  # 16 rows each: one training network for all
    expected = [net.evaluate(*part) for part in parts]
    for _ in range(5):
        found = [None] * 4

        def run(i, found=found):
            for _ in range(3):
                found[i] = net.evaluate(*parts[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert found == expected


# -- divergence and batch norm's statistics --------------------------------------------------------

def bn_net(ctx):
    return clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(8), clnet.BatchNorm(), clnet.FullyConnected(2)],
                                  dtype=np.float64, seed=5)


def fit_bn(net, optimizer, x, y, epochs):
    return net.fit(x, y, "mse", epochs=epochs, batch_size=4, optimizer=optimizer, seed=2, progress=False)


def test_after_a_divergence_the_running_statistics_and_optimizer_state_are_those_of_the_kept_point(ctx):
    """The old code restored the parameters only: batch norm's running statistics stayed NaN (so
    was every prediction) and the momentum went on from the diverged run."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
    net, optimizer = bn_net(ctx), clnet.SGD(3.0, momentum=0.9)
    with pytest.raises(clnet.TrainingDivergedError) as err:
        fit_bn(net, optimizer, x, y, 300)
    epoch = err.value.epoch
    assert epoch > 3
    reference, reference_optimizer = bn_net(ctx), clnet.SGD(3.0, momentum=0.9)
    fit_bn(reference, reference_optimizer, x, y, epoch - 2)
    found = net.host_arrays()
    for name, value in reference.host_arrays().items():  # running_mean and running_var included
        np.testing.assert_array_equal(found[name], value, err_msg=name)
    assert optimizer.steps == reference_optimizer.steps
    for mine, theirs in zip(optimizer.host_state(net.parameter_buffer),
                            reference_optimizer.host_state(reference.parameter_buffer)):
        np.testing.assert_array_equal(mine, theirs)
    assert np.isfinite(net.predict(x)).all()


@pytest.mark.parametrize("loop", ["fit", "sgd"])
def test_a_divergence_in_sgd_and_fit_puts_batch_norms_statistics_back(ctx, loop):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
    net = bn_net(ctx)
    train = (lambda n, epochs: fit_bn(n, clnet.SGD(30.0), x, y, epochs)) if loop == "fit" else (
        lambda n, epochs: clnet.sgd(clnet.TrainingNetwork(n, x), y, epochs=epochs, learning_rate=30.0))
    with pytest.raises(clnet.TrainingDivergedError) as err:
        train(net, 300)
    reference = bn_net(ctx)
    if err.value.epoch > 2:
        train(reference, err.value.epoch - 2)
    found = net.host_arrays()
    for name, value in reference.host_arrays().items():
        np.testing.assert_array_equal(found[name], value, err_msg=name)


def test_inputs_whose_statistics_overflow_stop_training_naming_the_layer(ctx):
    """|x| of 1e20 in float32: the cost stays finite (batch norm divides by an infinite variance)
    while running_var became infinite, and the old code went on and saved it."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 4)) * 1e20, rng.normal(size=(8, 2))
    net = clnet.InferenceNetwork(ctx, 4, [clnet.BatchNorm(), clnet.FullyConnected(2)], seed=5)
    before = net.host_arrays()
    with pytest.raises(clnet.TrainingDivergedError, match=r"layer_0.running_var became infinite or NaN in epoch 1 "
                       r"\(the layer's inputs are too large for float32 statistics"):
        net.fit(x, y, "mse", epochs=3, batch_size=4, progress=False)
    for name, value in net.host_arrays().items():  # the start of epoch 1
        np.testing.assert_array_equal(value, before[name], err_msg=name)


# -- bad files: clnet's own errors, checked from the headers before arrays are read ----------------

def saved_net(ctx, tmp_path):
    net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(3, "relu"), clnet.BatchNorm(),
                                          clnet.FullyConnected(2)], seed=1)
    return net, net.save(tmp_path / "net.npz")


def rewrite(path, changes: dict, description=None):
    """The network file at `path` with entries replaced (a value None drops one)."""
    import json

    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if description is not None:
        arrays["clnet_network"] = np.array(json.dumps(description(json.loads(str(arrays["clnet_network"])))))
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


@pytest.mark.parametrize("change, message", [
    (lambda a: {"layer_0.weights": np.full_like(a["layer_0.weights"], np.nan)},
     "layer_0.weights holds 12 values that are not finite"),
    (lambda a: {"layer_1.running_var": -np.ones(3, np.float32)}, "layer_1.running_var must be >= 0.0 everywhere"),
    (lambda a: {"layer_0.weights": a["layer_0.weights"].astype(np.int64)},
     r"layer_0.weights must be a float array of shape \(3, 4\), got int64"),
])
def test_a_file_with_bad_values_is_refused_naming_the_array(ctx, tmp_path, change, message):
    net, path = saved_net(ctx, tmp_path)
    rewrite(path, change(net.host_arrays()))
    with pytest.raises(ValueError, match=message):
        clnet.load(path, ctx)


@pytest.mark.parametrize("description, message", [
    (lambda d: [1, 2], "unknown network file format 'a JSON list'"),
    (lambda d: {**d, "input_shape": [4.5]}, "the shape of a sample must be a positive whole number"),
    (lambda d: {**d, "input_shape": 1.5}, "the shape of a sample must be a positive whole number"),
    (lambda d: {**d, "layers": [{"type": "LayerNorm", "config": {"normalized_shape": [4], "eps": 0}}]},
     r"eps must be a number in \(0, inf\]"),
])
def test_a_file_with_a_bad_description_is_refused(ctx, tmp_path, description, message):
    _, path = saved_net(ctx, tmp_path)
    rewrite(path, {}, description)
    with pytest.raises(ValueError, match=message):
        clnet.load(path, ctx)


def test_files_that_are_not_network_files_get_clnets_error(ctx, tmp_path):
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"plain.npy is a single numpy array \(.npy\), not a clnet network file"):
        clnet.load(tmp_path / "plain.npy", ctx)
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match="list.json is not a zip archive, not a clnet network file"):
        clnet.load(tmp_path / "list.json", ctx)


def test_an_array_header_claiming_gigabytes_is_refused_before_anything_is_read(ctx, tmp_path):
    """A 40 GB claim in a small file, and 400 MB of compressed zeros in 0.4 MB (the old code read
    every array before checking any: 2.2 GB of memory for a 2 MB file)."""
    import tracemalloc
    import zipfile

    net, path = saved_net(ctx, tmp_path)
    with zipfile.ZipFile(path, "a") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        with archive.open("layer_0.weights.npy", "w") as member:  # a later entry of the same name wins
            np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (10**10,)})
    with pytest.raises(ValueError, match=r"layer_0.weights must be a float array of shape \(3, 4\), got float32 "
                                         r"\(10000000000,\)"):
        clnet.load(path, ctx)
    _, path = saved_net(ctx, tmp_path)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("checkpoint_best.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (10**8,)})
            for _ in range(100):
                member.write(bytes(4 * 10**6))
    assert path.stat().st_size < 2 * 10**6
    tracemalloc.start()
    try:
        clnet.load(path, ctx)  # a network file: checkpoint entries are not read
        with pytest.raises(ValueError, match=r"checkpoint_best must be a float array of shape \(\d+,\), got "
                                             r"float32 \(100000000,\)"):
            clnet.train.saving.Entries(path).read("checkpoint_best", (29,))
        assert tracemalloc.get_traced_memory()[1] < 50 * 2**20
    finally:
        tracemalloc.stop()


def test_a_network_with_values_that_are_not_finite_is_not_saved(ctx, tmp_path):
    net, _ = saved_net(ctx, tmp_path)
    arrays = net.host_arrays()
    arrays["layer_1.running_var"][1] = np.inf
    net.set_arrays(arrays)
    with pytest.raises(ValueError, match="cannot save a network whose layer_1.running_var hold values that are not "
                                         "finite"):
        net.save(tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


# -- bad ONNX models ---------------------------------------------------------------------------------

def onnx_model(tmp_path, nodes, constants, x_shape=("n", 3), name="bad.onnx"):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()])
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7), str(path))
    return path


def gemm(weights, bias=None):
    from onnx import helper

    return [helper.make_node("Gemm", ["x", "w"] + (["b"] if bias is not None else []), ["y"], transB=1, name="fc")], \
        {"w": weights, **({} if bias is None else {"b": bias})}


def image_node(op, **attributes):
    from onnx import helper

    return [helper.make_node(op, ["x"] + (["w"] if op == "Conv" else []), ["y"], name="n", **attributes)]


@pytest.mark.parametrize("case, message", [
    ("nan weights", r"layer_0.weights holds 1 values that are not finite"),
    ("int64 weights", r"layer_0.weights must be a float array of shape \(2, 3\), got int64"),
    ("negative variance", r"layer_0.running_var must be >= 0.0 everywhere"),
    ("no output", r"Relu node 'r' has no output"),
    ("empty constant", r"Constant node 'c' has no value clnet reads .* it has no attributes"),
    ("maxpool without kernel", r"MaxPool node 'n': kernel_shape None; clnet's pooling needs the 2 sizes"),
    ("three pads", r"Conv node 'n': pads \[1, 1, 1\]; a 2-D window has 4"),
    ("bad transpose", r"Transpose node 't': perm \[0, 0\] is not a permutation of the 2 axes"),
])
def test_a_bad_onnx_model_gets_clnets_error_naming_the_node_or_array(ctx, tmp_path, case, message):
    from onnx import helper

    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    if case == "nan weights":
        path = onnx_model(tmp_path, *gemm(np.where(w == 4, np.nan, w).astype(np.float32)))
    elif case == "int64 weights":
        path = onnx_model(tmp_path, *gemm(w.astype(np.int64)))
    elif case == "negative variance":
        nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn")]
        ones = np.ones(2, np.float32)
        path = onnx_model(tmp_path, nodes, {"s": ones, "b": ones, "m": ones, "v": -ones}, x_shape=("n", 2, 4, 4))
    elif case == "no output":
        nodes, constants = gemm(w)
        path = onnx_model(tmp_path, nodes + [helper.make_node("Relu", ["y"], [], name="r")], constants)
    elif case == "empty constant":
        nodes, constants = gemm(w)
        path = onnx_model(tmp_path, [helper.make_node("Constant", [], ["k"], name="c")] + nodes, constants)
    elif case == "maxpool without kernel":
        path = onnx_model(tmp_path, image_node("MaxPool"), {}, x_shape=("n", 2, 4, 4))
    elif case == "three pads":
        path = onnx_model(tmp_path, image_node("Conv", pads=[1, 1, 1]), {"w": np.ones((2, 2, 3, 3), np.float32)},
                          x_shape=("n", 2, 4, 4))
    else:
        nodes = [helper.make_node("Transpose", ["wt"], ["w"], perm=[0, 0], name="t"),
                 helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")]
        path = onnx_model(tmp_path, nodes, {"wt": w})
    with pytest.raises(ValueError, match=message):
        clnet.from_onnx(path, ctx)


def test_random_bytes_are_not_an_onnx_model(ctx, tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "random.onnx"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"random.onnx is not a readable ONNX model \(DecodeError"):
        clnet.from_onnx(path, ctx)
