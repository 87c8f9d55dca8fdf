"""clnet without CLBlast (pyclblast made unimportable): every device uses clnet's own GEMM,
`clnet devices` says so, and the README's ten-line example trains."""

import subprocess
import sys
import textwrap

from .conftest import TEST_DEVICE

WITHOUT_CLBLAST = textwrap.dedent("""\
    import sys
    sys.modules["pyclblast"] = None  # `import pyclblast` now raises ImportError, as without the package
    import numpy as np, clnet
    from clnet.ops import blas
    from clnet.app import cli
    assert not blas.HAVE_CLBLAST
    x = np.array([[0.3, 0.9], [0.3, 0.9]], np.float32)
    y = np.array([[0.5], [0.5]], np.float32)
    with clnet.Context(sys.argv[1]) as ctx:
        net = clnet.InferenceNetwork(ctx, 2, [clnet.FullyConnected(4, "tanh"),
                                              clnet.FullyConnected(1, "sigmoid")], dtype=np.float32)
        training = clnet.TrainingNetwork(net, x)
        cost = clnet.sgd(training, y, "quadratic", epochs=2000, learning_rate=0.05)
        print("output", net(x).get().ravel().round(3).tolist(), "backend", blas.settings(ctx, "float32").large)
        try:
            blas.gemm(ctx, training.x, net.layers[0].weights, training.layers[0].a, trans_b=True, backend="clblast")
        except RuntimeError as exc:
            print("asked for clblast:", exc)
    cli.main(["devices"])
    """)


def test_without_pyclblast_clnet_trains_on_its_own_gemm():
    result = subprocess.run([sys.executable, "-c", WITHOUT_CLBLAST, TEST_DEVICE], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "output [0.5, 0.5] backend clnet" in result.stdout
    assert "asked for clblast: GEMM backend 'clblast' asked for, but CLBlast is not installed" in result.stdout
    assert "CLBlast is not installed (pip install 'clnet[clblast]'" in result.stdout
    assert "CPUs use clnet's own GEMM, GPUs its GPU kernel" in result.stdout
