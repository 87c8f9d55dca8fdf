"""What the third fault trial found (issue 33), each against what a careful user expects:
evaluate racing fit, divergence and batch norm's statistics, caches, scratch buffers, bad files.
(MPI ranks that end outside fit: tests/test_distributed.py.)"""

import gc
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


# -- caches -------------------------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("tiles, local", [
    ({"rows": 10000, "local": 16, "width": None}, None),  # the old code: no result after 900 s
    ({"rows": 0, "local": 16, "width": None}, None),  # ZeroDivisionError
    ({"rows": 6, "local": 16, "width": 64}, None),  # a build error
    ({"rows": 6, "local": 16, "width": 3}, None),
    ({"rows": "6", "local": 16, "width": None}, None),  # a template error
    ({"rows": 6, "local": 12, "width": None}, None),
    ({"rows": 6, "local": 16, "width": None}, {"tm": 10000, "tn": 64, "tk": 16, "wm": 4, "wn": 4}),
])
def test_a_tuning_entry_with_values_the_kernels_cannot_take_is_ignored_with_a_warning(cache, tiles, local):
    import json

    from clnet.ops import blas

    from .conftest import TEST_DEVICE

    with clnet.Context(TEST_DEVICE) as probe:
        key = probe.info.key
    cache.mkdir(exist_ok=True)
    entry = {"format": 1, "backend": {"small": "clnet", "large": "clnet"}, "clnet": tiles,
             **({} if local is None else {"local": local})}
    (cache / "tuning.json").write_text(json.dumps({"format": 1, "devices": {key: {"float32": entry}}}))
    with pytest.warns(UserWarning, match=r"ignoring the float32 GEMM tuning of .* in .*tuning.json: .*run `clnet "
                                         r"tune` to make a new one"):
        ctx = clnet.Context(TEST_DEVICE)
    with ctx:
        assert not blas.settings(ctx, "float32").tuned
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(2)], seed=0)
        w, b = net.host_arrays()["layer_0.weights"], net.host_arrays()["layer_0.bias"]
        np.testing.assert_allclose(net(a).get(), a @ w.T + b, rtol=1e-5)


SAVER = """
import sys, types
from clnet.tuning import store
process = sys.argv[1]
for j in range(5):
    store.store(types.SimpleNamespace(key=f"process {process}|device {j}"), "float32", {"format": 1, "j": j})
"""


def test_tuning_saves_of_processes_at_once_lose_nothing(cache):
    """8 processes saving 5 entries each into one tuning file at once (the old code kept 26 of 40)."""
    import json
    import os
    import subprocess

    env = {**os.environ, "CLNET_CACHE_DIR": str(cache)}
    runs = [subprocess.Popen([sys.executable, "-c", SAVER, str(p)], env=env) for p in range(8)]
    assert all(run.wait(120) == 0 for run in runs)
    devices = json.loads((cache / "tuning.json").read_text())["devices"]
    assert sorted(devices) == sorted(f"process {p}|device {j}" for p in range(8) for j in range(5))


def test_device_checks_saved_by_threads_at_once_lose_nothing(cache, switching_often):
    import types

    from clnet.runtime import checks

    threads = [threading.Thread(target=checks.store, args=(types.SimpleNamespace(key=f"device {i}"),
                                                            {"passed": True})) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(checks.load()) == sorted(f"device {i}" for i in range(16))


def test_a_cache_folder_where_no_file_can_be_made_falls_back_with_a_warning(tmp_path, monkeypatch):
    from clnet.runtime import paths

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    with pytest.warns(UserWarning, match=r"cannot make files in the cache folder .*a-file/cache \(Not a directory\); "
                                         r"using .* instead \(set CLNET_CACHE_DIR"):
        found = paths.cache_dir()
    assert paths.writable(found) is None
    with clnet.Context("pocl") as ctx:  # the tuning file, device checks, failed builds go there
        assert ctx.info.name


def test_pocl_lists_its_devices_where_its_cache_under_home_cannot_be_written(tmp_path):
    """HOME/.cache a file (as unwritable as a read-only HOME, also for root): the old code said
    "The OpenCL platforms (Portable Computing Language) have no devices"."""
    import os
    import subprocess

    (tmp_path / ".cache").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "POCL_CACHE_DIR")}
    result = subprocess.run([sys.executable, "-c", "import clnet; print(clnet.Context('pocl').info.name)"],
                            env={**env, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_a_build_error_is_reported_when_its_source_cannot_be_saved(ctx, tmp_path, monkeypatch):
    """The old code raised the OSError of saving the source instead of the build's error."""
    from clnet.runtime.programs import Programs, Templates, kernel_dir

    def cannot(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Programs, "_save_failed_source", staticmethod(cannot))
    (tmp_path / "broken.cl").write_text('<%include file="common.cl"/>\n'
                                        '${kernel("k", "real *a")} { a_p[a_off] = undeclared_thing + 1; }\n')
    programs = Programs(ctx.context, ctx.info, Templates([tmp_path, kernel_dir()]))
    with pytest.raises(clnet.KernelBuildError, match=r"(?s)its source could not be saved: .*Permission denied.*"
                                                     r"Build log:.*undeclared_thing"):
        programs.program("broken.cl", dtype="float32")


# -- a damaged driver cache --------------------------------------------------------------------------

def test_a_crashing_measurement_process_is_named_with_the_kernel_caches():
    """The self-check, tune and bench run in a process of their own (clnet.app.isolated): a driver
    that crashes there (SIGBUS, SIGABRT on a damaged kernel cache) is named, with the way out
    (the old code: BrokenProcessPool, "terminated abruptly")."""
    import os

    from clnet.app.isolated import ProcessDiedError, run_alone

    with pytest.raises(ProcessDiedError, match=r"the measuring process was killed by SIGABRT: an OpenCL driver "
                                               r"crashed.*`clnet cache --clear` empties them"):
        run_alone(os.abort)
    assert run_alone(divmod, 7, 2) == (3, 1)
    with pytest.raises(ZeroDivisionError):
        run_alone(divmod, 1, 0)


DAMAGED_RUN = """
import sys, numpy as np, clnet
ctx = clnet.Context("pocl")
net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(3, "tanh")])
print(net(np.ones((2, 4), np.float32)).get().sum(), flush=True)
"""


def test_a_damaged_pocl_cache_is_named_with_the_command_that_clears_it(tmp_path):
    """PoCL's cached program.bc truncated: PoCL gives INVALID_KERNEL_NAME (the old code: pyopencl's
    LogicError, nothing about a cache); `clnet cache --clear` empties it and the next run works."""
    import os
    import subprocess

    from .conftest import TEST_DEVICE

    if TEST_DEVICE != "pocl":
        pytest.skip("PoCL's kernel cache")
    env = {**os.environ, "POCL_CACHE_DIR": str(tmp_path / "pocl"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}

    def run(*args):
        return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)

    assert run("-c", DAMAGED_RUN).returncode == 0
    for binary in (tmp_path / "pocl").rglob("program.bc"):
        binary.write_bytes(binary.read_bytes()[:50])
    damaged = run("-c", DAMAGED_RUN)
    assert "its driver's kernel cache holds a damaged or stale binary (PoCL: " in damaged.stderr, damaged.stderr
    assert "`clnet cache --clear` empties the kernel caches" in damaged.stderr
    cleared = run("-m", "clnet", "cache", "--clear")
    assert f"emptied PoCL's kernel cache {tmp_path / 'pocl'}" in cleared.stdout, cleared.stdout + cleared.stderr
    again = run("-c", DAMAGED_RUN)
    assert again.returncode == 0, again.stderr


# -- device memory: scratch of ended threads, dropped and closed networks ---------------------------

def small_cnn(ctx):
    return clnet.InferenceNetwork(ctx, (1, 8, 8), [clnet.Conv2d(4, 3, padding=1), clnet.BatchNorm(),
                                                   clnet.Flatten(), clnet.FullyConnected(3, "softmax")], seed=1)


def test_the_scratch_buffers_of_threads_that_ended_are_released(ctx):
    """32 threads predicting once kept their im2col scratch until the context closed (83 MB in the trial)."""
    x = np.ones((16, 1, 8, 8), np.float32)
    net = small_cnn(ctx)
    net.predict(x)  # this thread's scratch, kept
    gc.collect()  # nothing of earlier tests freed while this one counts
    before = ctx.memory_in_use
    threads = [threading.Thread(target=net.predict, args=(x,)) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ctx.memory_in_use == before


def test_a_dropped_network_frees_its_device_memory_at_once(ctx):
    """Without a garbage collection (the old code: a TrainingNetwork <-> network cycle kept every
    buffer until the collector ran)."""
    x, labels = np.ones((16, 1, 8, 8), np.float32), np.arange(16) % 3

    def use(net):
        net.fit(x, labels, epochs=2, batch_size=8, validation=(x, labels), progress=False)
        net.evaluate(x, labels)

    use(small_cnn(ctx))  # this thread's scratch buffers for these shapes, kept
    gc.collect()
    before = ctx.memory_in_use
    gc.disable()
    try:
        net = small_cnn(ctx)
        use(net)
        assert ctx.memory_in_use > before
        del net
        assert ctx.memory_in_use == before
    finally:
        gc.enable()


def test_a_closed_network_frees_its_memory_and_refuses_to_be_used(ctx):
    x, labels = np.ones((16, 1, 8, 8), np.float32), np.arange(16) % 3
    small_cnn(ctx).fit(x, labels, epochs=1, batch_size=8, progress=False)  # this thread's scratch, kept
    gc.collect()  # nothing of earlier tests freed while this one counts
    before = ctx.memory_in_use
    with small_cnn(ctx) as net:
        net.fit(x, labels, epochs=1, batch_size=8, progress=False)
        assert ctx.memory_in_use > before
    assert ctx.memory_in_use == before
    for use in (lambda: net.predict(x), lambda: net.fit(x, labels, progress=False), lambda: net.host_arrays(),
                lambda: net.evaluate(x, labels)):
        with pytest.raises(clnet.ContextClosedError, match=r"this network \(InferenceNetwork\(.*\)\) was closed: its "
                                                           "device memory is released"):
            use()


# -- batch norm on MPI (the two-rank equality: tests/test_cnn.py) -----------------------------------

def test_synchronized_batch_norm_refuses_steps_where_a_rank_has_no_rows(ctx):
    """Its two collectives per step would leave the other ranks waiting for a rank with no rows."""
    import types

    from clnet.train import batches
    from clnet.train.parallel import DataParallel

    world = types.SimpleNamespace(size=2, rank=0, sum=lambda value: 2 * value)  # both ranks alike
    net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(3), clnet.Residual([clnet.BatchNorm(sync=True)]),
                                          clnet.FullyConnected(2)])
    parallel = DataParallel(world, sharded=False)
    parallel.check_synced_steps(net, batches.split(40, 8, 0, 2))  # 4 rows each: fine
    with pytest.raises(ValueError, match=r"BatchNorm\(sync=True\) needs rows on every rank in every step; 2 rank\(s\) "
                                         r"have a step without any: choose a batch_size of at least 2"):
        parallel.check_synced_steps(net, batches.split(41, 8, 0, 2))  # the last batch: 1 row, on one rank


def test_synchronized_batch_norm_saves_loads_and_trains_in_one_process_as_batch_norm(ctx, tmp_path):
    x, labels = classes_data()

    def make(sync):
        return clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(8), clnet.BatchNorm(sync=sync),
                                               clnet.FullyConnected(3, "softmax")], dtype=np.float64, seed=4)

    synced, plain = make(True), make(False)
    for net in (synced, plain):
        net.fit(x, labels, epochs=2, batch_size=16, seed=1, progress=False)
    for name, value in plain.host_arrays().items():
        np.testing.assert_array_equal(synced.host_arrays()[name], value, err_msg=name)
    loaded = clnet.load(synced.save(tmp_path / "synced"), ctx)
    assert loaded.specs[1] == clnet.BatchNorm(sync=True) and repr(loaded.specs[1]).endswith("sync=True)")
    assert clnet.load(plain.save(tmp_path / "plain"), ctx).specs[1] == clnet.BatchNorm()
    with pytest.raises(ValueError, match="sync must be True or False, got 'yes'"):
        clnet.BatchNorm(sync="yes")


def test_a_training_network_of_a_closed_or_dropped_network_says_so(ctx):
    x = np.ones((3, 6))
    net = mlp(ctx)
    own = net.training_network(3)  # the network's own links back weakly
    del net
    with pytest.raises(clnet.ContextClosedError, match="this training network's network was dropped"):
        own.forward()
    net = mlp(ctx)
    made = clnet.TrainingNetwork(net, x)
    net.close()
    with pytest.raises(clnet.ContextClosedError, match=r"this network \(.*\) was closed"):
        made.forward()


def test_set_arrays_that_fails_changes_nothing(ctx):
    """The old code set the arrays one by one and stopped at the first bad one, half overwritten
    (issue 35's list; load's path goes through it)."""
    net = mlp(ctx)
    before = net.host_arrays()
    changed = {name: value + 1 for name, value in before.items()}
    changed["layer_1.bias"] = np.zeros(4)  # the last one, of a wrong shape
    with pytest.raises(ValueError, match=r"layer_1.bias must have shape \(3,\), got \(4,\)"):
        net.set_arrays(changed)
    for name, value in net.host_arrays().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
